//! Example site plugin: make one VIP holder the preferred MASTER (it takes the
//! VIP back when it returns) and tune the haproxy health checks' rise/fall.
//! It runs after the default policy and only edits what that proposed, which
//! is what proves the chain. A site copies this crate to start its own policy.
//!
//! Settings (all optional): `{"prefer": "lb1", "rise": 5, "fall": 2}`.

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
use haseed::policy::plan::{NodePlan, VrrpState};
use haseed::policy::site::Site;

/// Priorities of the preferred node and of the other holders: far enough
/// apart that the preferred node wins every election it takes part in.
const PREFERRED_PRIORITY: u8 = 150;
const OTHER_PRIORITY: u8 = 100;

/// Every key is optional; an unknown key is an error.
#[derive(Default)]
struct Settings {
    /// Name of the node that should be MASTER of every VIP it holds.
    prefer: Option<String>,
    /// haproxy `rise`/`fall` for every server check.
    rise: Option<u32>,
    fall: Option<u32>,
}

impl Settings {
    /// Parses the settings object; every error starts with its key.
    fn parse(json: &str) -> Result<Settings, String> {
        let json = if json.trim().is_empty() { "{}" } else { json };
        let value: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let serde_json::Value::Object(table) = value else {
            return Err("must be a JSON object".into());
        };
        let mut settings = Settings::default();
        for (key, value) in table {
            match key.as_str() {
                "prefer" => settings.prefer = Some(field(&key, value)?),
                "rise" => settings.rise = Some(check_count(&key, field(&key, value)?)?),
                "fall" => settings.fall = Some(check_count(&key, field(&key, value)?)?),
                _ => {
                    return Err(format!(
                        "unknown key {key:?} (expected one of prefer, rise, fall)"
                    ))
                }
            }
        }
        Ok(settings)
    }
}

/// One settings value, with the key in the error.
fn field<T: serde::de::DeserializeOwned>(key: &str, value: serde_json::Value) -> Result<T, String> {
    T::deserialize(value).map_err(|e| format!("{key}: {e}"))
}

/// haproxy (and the host's checker) accept rise/fall 1..1000.
fn check_count(key: &str, n: u32) -> Result<u32, String> {
    if (1..=1000).contains(&n) {
        Ok(n)
    } else {
        Err(format!("{key}: {n} is not in 1..1000"))
    }
}

struct Component;

impl Guest for Component {
    type Decider = PreferLb1;

    fn info() -> PluginInfo {
        PluginInfo {
            name: "prefer-lb1".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description:
                "Makes one VIP holder the preferred MASTER (with preemption) and tunes haproxy \
                 check rise/fall"
                    .into(),
            settings_help: "JSON object, all keys optional: \"prefer\": node name that becomes \
                            MASTER (priority 150) of its VIPs while the other holders are BACKUP \
                            (priority 100), all preempting; \"rise\", \"fall\": 1..1000, set on \
                            every haproxy server check"
                .into(),
            #[cfg(not(any(feature = "contract-0-1", feature = "contract-0-2")))]
            scope: Some(vec![
                "keepalived.instances.state".into(),
                "keepalived.instances.priority".into(),
                "keepalived.instances.nopreempt".into(),
                "haproxy.backends.servers.check.rise".into(),
                "haproxy.backends.servers.check.fall".into(),
            ]),
        }
    }
}

struct PreferLb1 {
    /// Node names by index: all `decide` needs from the site.
    names: Vec<String>,
    settings: Settings,
}

impl GuestDecider for PreferLb1 {
    fn open(site: Site, settings: String) -> Result<Decider, PolicyError> {
        let settings = Settings::parse(&settings).map_err(|e| PolicyError {
            message: format!("settings: {e}"),
            field: Some("settings".into()),
        })?;
        if let Some(prefer) = &settings.prefer {
            if !site.nodes.iter().any(|n| &n.name == prefer) {
                return Err(PolicyError {
                    message: format!("prefer: no node named {prefer}"),
                    field: Some("settings.prefer".into()),
                });
            }
        }
        let names = site.nodes.into_iter().map(|n| n.name).collect();
        Ok(Decider::new(PreferLb1 { names, settings }))
    }

    fn decide(&self, node: u32, proposed: NodePlan) -> Result<NodePlan, PolicyError> {
        let name = self.names.get(node as usize).ok_or_else(|| PolicyError {
            message: format!("node index {node} out of range"),
            field: None,
        })?;
        let mut plan = proposed;
        // What changed on this node, for the log line.
        let mut changes = Vec::new();

        let instances = plan.keepalived.as_mut().map(|k| &mut k.instances);
        if let (Some(prefer), Some(instances)) = (&self.settings.prefer, instances) {
            if !instances.is_empty() {
                let preferred = prefer == name;
                let (state, priority) = if preferred {
                    (VrrpState::Master, PREFERRED_PRIORITY)
                } else {
                    (VrrpState::Backup, OTHER_PRIORITY)
                };
                for instance in instances.iter_mut() {
                    // Preemption: the preferred node takes the VIP back when
                    // it returns, so nobody may keep it with nopreempt
                    // (keepalived ignores nopreempt on a MASTER anyway).
                    instance.state = state;
                    instance.priority = priority;
                    instance.nopreempt = false;
                }
                changes.push(if preferred { "master" } else { "backup" }.to_string());
            }
        }

        if self.settings.rise.is_some() || self.settings.fall.is_some() {
            let mut checks = 0;
            let servers = plan
                .haproxy
                .iter_mut()
                .flat_map(|h| h.backends.iter_mut())
                .flat_map(|b| b.servers.iter_mut());
            for check in servers.filter_map(|s| s.check.as_mut()) {
                check.rise = self.settings.rise.unwrap_or(check.rise);
                check.fall = self.settings.fall.unwrap_or(check.fall);
                checks += 1;
            }
            if checks > 0 {
                changes.push(format!("{checks} server checks tuned"));
            }
        }

        // Reaches the user's log, prefixed with this plugin's name.
        if !changes.is_empty() {
            eprintln!("prefer-lb1: {name}: {}", changes.join(", "));
        }
        Ok(plan)
    }
}

export!(Component);
