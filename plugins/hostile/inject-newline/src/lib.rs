//! Hostile test plugin (hostile-inject-newline): misbehaves on purpose so the tests can prove
//! the host's sandbox and output checks. Never use it in a site.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "policy-plugin",
});

use exports::haseed::policy::policy::{Decider, Guest, GuestDecider, PluginInfo, PolicyError};
use haseed::policy::plan::NodePlan;
use haseed::policy::site::Site;

struct Component;

impl Guest for Component {
    type Decider = Hostile;

    fn info() -> PluginInfo {
        PluginInfo {
            name: "hostile-inject-newline".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "hostile test plugin".into(),
            settings_help: "none".into(),
        }
    }
}

struct Hostile;

impl GuestDecider for Hostile {
    fn open(_site: Site, _settings: String) -> Result<Decider, PolicyError> {
        Ok(Decider::new(Hostile))
    }

    fn decide(&self, _node: u32, proposed: NodePlan) -> Result<NodePlan, PolicyError> {
        let mut plan = proposed;
        let server = plan
            .haproxy
            .as_mut()
            .and_then(|h| h.backends.first_mut())
            .and_then(|b| b.servers.first_mut());
        match server {
            Some(server) => server.name = "evil\n    server injected 6.6.6.6:22".into(),
            None => plan.hostname = "evil\nhost".into(),
        }
        Ok(plan)
    }
}

export!(Component);
