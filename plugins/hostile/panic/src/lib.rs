//! Hostile test plugin (hostile-panic): misbehaves on purpose so the tests can prove
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
            name: "hostile-panic".into(),
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
        let _ = proposed;
        panic!("hostile plugin panicked on purpose")
    }
}

export!(Component);
