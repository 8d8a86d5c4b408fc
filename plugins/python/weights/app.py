"""weights: a haseed policy plugin written in Python (componentize-py).

It proves the plugin contract is language-neutral while doing real work:
it sets haproxy server weights from the site's settings and drains servers
(weight 0: no new connections, health checks continue) for maintenance.

Settings: {"weights": {"master1": 200}, "drain": ["master3"]}, both optional.
Build:    componentize-py -d ../../../wit -w policy-plugin componentize app -o weights.wasm

componentize-py looks for the exported interface `policy` in the module
policy.py next to this one; the interface's free functions live here.
"""

from wit_world import exports
from wit_world.exports import policy


class Policy(exports.Policy):
    def info(self) -> policy.PluginInfo:
        return policy.PluginInfo(
            name="weights",
            version="0.1.0",
            description="Sets haproxy server weights and drains servers for maintenance (Python)",
            settings_help='{"weights": {NODE: 0..256}, "drain": [NODE, ...]}, both optional',
            scope=["haproxy.backends.servers.weight"],
        )
