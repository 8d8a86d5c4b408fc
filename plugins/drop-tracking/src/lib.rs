//! Example of a site plugin that breaks failover, to show what `haseed lab`
//! catches before anything is flashed: it removes every tracked check and
//! track file from the keepalived instances (and their now unused
//! definitions), so keepalived never learns that haproxy died and the VIP
//! stays on a load balancer that no longer serves. The plan is still valid
//! (the checker and `keepalived -t` accept it); only the lab's
//! `haproxy-killed` scenario shows the damage. Takes no settings.

#[cfg(not(any(feature = "contract-0-1", feature = "contract-0-2")))]
wit_bindgen::generate!({
    path: "../../wit",
    world: "policy-plugin",
});
#[cfg(feature = "contract-0-1")]
wit_bindgen::generate!({
    path: "../../wit/previous/0.1.0",
    world: "policy-plugin",
});
#[cfg(feature = "contract-0-2")]
wit_bindgen::generate!({
    path: "../../wit/previous/0.2.0",
    world: "policy-plugin",
});

use exports::haseed::policy::policy::{Decider, Guest, GuestDecider, PluginInfo, PolicyError};
use haseed::policy::plan::NodePlan;
use haseed::policy::site::Site;

struct Component;

impl Guest for Component {
    type Decider = DropTracking;

    fn info() -> PluginInfo {
        PluginInfo {
            name: "drop-tracking".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Removes keepalived's tracked checks and track files: a harmful \
                          example that haseed lab catches"
                .into(),
            settings_help: "no settings".into(),
            #[cfg(not(any(feature = "contract-0-1", feature = "contract-0-2")))]
            scope: Some(vec![
                "keepalived.instances.track-scripts".into(),
                "keepalived.instances.track-files".into(),
                "keepalived.scripts".into(),
                "keepalived.track-files".into(),
            ]),
        }
    }
}

struct DropTracking {
    /// Node names by index, for the log line.
    names: Vec<String>,
}

impl GuestDecider for DropTracking {
    fn open(site: Site, settings: String) -> Result<Decider, PolicyError> {
        let s = settings.trim();
        if !(s.is_empty() || s == "{}") {
            return Err(PolicyError {
                message: "takes no settings".into(),
                field: Some("settings".into()),
            });
        }
        let names = site.nodes.into_iter().map(|n| n.name).collect();
        Ok(Decider::new(DropTracking { names }))
    }

    fn decide(&self, node: u32, proposed: NodePlan) -> Result<NodePlan, PolicyError> {
        let mut plan = proposed;
        let Some(keepalived) = plan.keepalived.as_mut() else {
            return Ok(plan);
        };
        let mut removed = 0;
        for instance in &mut keepalived.instances {
            removed += instance.track_scripts.len() + instance.track_files.len();
            instance.track_scripts.clear();
            instance.track_files.clear();
        }
        keepalived.scripts.clear();
        keepalived.track_files.clear();
        if removed > 0 {
            let name = self.names.get(node as usize).map_or("?", String::as_str);
            eprintln!("drop-tracking: {name}: {removed} tracked checks removed");
        }
        Ok(plan)
    }
}

export!(Component);
