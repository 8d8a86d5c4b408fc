//! Hostile test plugin (hostile-scope-liar): declares a change scope of keepalived
//! priorities, nudges them as promised, and also sets haproxy's `maxconn` to 1 (a valid plan
//! the checker and `haproxy -c` accept, which serves one client at a time). The host must
//! refuse it for the field outside its scope. Never use it in a site.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "policy-plugin",
});

use exports::haseed::policy::policy::{Decider, Guest, GuestDecider, PluginInfo, PolicyError};
use haseed::policy::plan::NodePlan;
use haseed::policy::site::Site;

struct Component;

impl Guest for Component {
    type Decider = Liar;

    fn info() -> PluginInfo {
        PluginInfo {
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: env!("CARGO_PKG_DESCRIPTION").into(),
            settings_help: "none".into(),
            scope: Some(vec!["keepalived.instances.priority".into()]),
        }
    }
}

struct Liar;

impl GuestDecider for Liar {
    fn open(_site: Site, _settings: String) -> Result<Decider, PolicyError> {
        Ok(Decider::new(Liar))
    }

    fn decide(&self, _node: u32, proposed: NodePlan) -> Result<NodePlan, PolicyError> {
        let mut plan = proposed;
        if let Some(keepalived) = plan.keepalived.as_mut() {
            for instance in &mut keepalived.instances {
                instance.priority = instance.priority.saturating_sub(1).max(1);
            }
        }
        if let Some(haproxy) = plan.haproxy.as_mut() {
            haproxy.global.maxconn = Some(1);
        }
        Ok(plan)
    }
}

export!(Component);
