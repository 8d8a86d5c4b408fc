//! Example site plugin: make one VIP holder the preferred MASTER (it takes the
//! VIP back when it returns) and tune the haproxy health checks' rise/fall.
//! A site copies this crate to start its own policy.
//!
//! Settings (all optional): `{"prefer": "lb1", "rise": 5, "fall": 2}`.

wit_bindgen::generate!({
    path: "../../wit",
    world: "policy-plugin",
});

use exports::haseed::policy::policy::{Decider, Guest, GuestDecider, PluginInfo};
use haseed::policy::plan::{NodePlan, VrrpState};
use haseed::policy::site::Site;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    prefer: Option<String>,
    rise: Option<u32>,
    fall: Option<u32>,
}

struct Component;

impl Guest for Component {
    type Decider = PreferLb1;

    fn info() -> PluginInfo {
        PluginInfo {
            name: "prefer-lb1".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description:
                "Makes one VIP holder the preferred MASTER and tunes haproxy check rise/fall".into(),
            settings_help: "{\"prefer\": NODE, \"rise\": N, \"fall\": N}, all optional".into(),
        }
    }
}

struct PreferLb1 {
    names: Vec<String>,
    settings: Settings,
}

impl GuestDecider for PreferLb1 {
    fn open(site: Site, settings: String) -> Result<Decider, String> {
        let settings: Settings =
            serde_json::from_str(&settings).map_err(|e| format!("settings: {e}"))?;
        if let Some(prefer) = &settings.prefer {
            if !site.nodes.iter().any(|n| &n.name == prefer) {
                return Err(format!("prefer: no node named {prefer}"));
            }
        }
        let names = site.nodes.into_iter().map(|n| n.name).collect();
        Ok(Decider::new(PreferLb1 { names, settings }))
    }

    fn decide(&self, node: u32, proposed: NodePlan) -> Result<NodePlan, String> {
        let name = self
            .names
            .get(node as usize)
            .ok_or_else(|| format!("node index {node} out of range"))?;
        let mut plan = proposed;
        if let (Some(prefer), Some(keepalived)) = (&self.settings.prefer, plan.keepalived.as_mut())
        {
            let preferred = prefer == name;
            for instance in &mut keepalived.instances {
                // Preemption: the preferred node starts MASTER, higher, and
                // takes the VIP back; keepalived ignores nopreempt on a MASTER.
                instance.state = if preferred {
                    VrrpState::Master
                } else {
                    VrrpState::Backup
                };
                instance.priority = if preferred { 150 } else { 100 };
                instance.nopreempt = false;
            }
            eprintln!(
                "prefer-lb1: {name}: {}",
                if preferred { "master" } else { "backup" }
            );
        }
        if let Some(haproxy) = plan.haproxy.as_mut() {
            for backend in &mut haproxy.backends {
                for server in &mut backend.servers {
                    if let Some(check) = server.check.as_mut() {
                        if let Some(rise) = self.settings.rise {
                            check.rise = rise;
                        }
                        if let Some(fall) = self.settings.fall {
                            check.fall = fall;
                        }
                    }
                }
            }
        }
        Ok(plan)
    }
}

export!(Component);
