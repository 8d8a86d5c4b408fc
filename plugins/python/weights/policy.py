"""The `decider` resource of the weights plugin (see app.py)."""

import json

from componentize_py_types import Err
from wit_world.exports import policy as contract


def refuse(message, field=None):
    return Err(contract.PolicyError(message=message, field=field))


class Decider(contract.Decider):
    def __init__(self, names, weights, drain):
        self.names = names
        self.weights = weights
        self.drain = drain

    @classmethod
    def open(cls, site, settings):
        try:
            table = json.loads(settings or "{}")
        except ValueError as e:
            raise refuse(f"settings: {e}", "settings")
        if not isinstance(table, dict):
            raise refuse("settings must be a JSON object", "settings")
        unknown = set(table) - {"weights", "drain"}
        if unknown:
            raise refuse(f"unknown key {sorted(unknown)[0]!r} (expected weights, drain)", "settings")
        names = [n.name for n in site.nodes]
        known = set(names)
        weights = table.get("weights", {})
        if not isinstance(weights, dict):
            raise refuse("weights must be a table of node = weight", "settings.weights")
        for node, w in weights.items():
            if node not in known:
                raise refuse(f"no node named {node}", f"settings.weights.{node}")
            if not isinstance(w, int) or isinstance(w, bool) or not 0 <= w <= 256:
                raise refuse(f"{w!r} is not a weight 0..256", f"settings.weights.{node}")
        drain = table.get("drain", [])
        if not isinstance(drain, list) or not all(isinstance(d, str) for d in drain):
            raise refuse("drain must be a list of node names", "settings.drain")
        for node in drain:
            if node not in known:
                raise refuse(f"no node named {node}", "settings.drain")
        return cls(names, weights, set(drain))

    def decide(self, node, proposed):
        if node >= len(self.names):
            raise refuse(f"node index {node} out of range")
        haproxy = proposed.haproxy
        if haproxy is None:
            return proposed
        changed = 0
        for backend in haproxy.backends:
            for server in backend.servers:
                if server.name in self.drain:
                    server.weight = 0
                    changed += 1
                elif server.name in self.weights:
                    server.weight = self.weights[server.name]
                    changed += 1
        for name in sorted(self.drain):
            proposed.warnings.append(f"{name} is drained (weight 0): no new connections through haproxy")
        print(f"weights: {self.names[node]}: {changed} server(s) weighted", flush=True)
        return proposed
