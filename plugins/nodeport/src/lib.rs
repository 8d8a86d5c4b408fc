//! Example site plugin: Kubernetes NodePort exposure as in the NodePort +
//! haproxy reference. Every frontend on a port range (30000-32767) sends to
//! every worker on the port the client used; a worker counts as healthy by
//! its node health endpoint on a separate port (29499), and comes back only
//! after 15 good checks (`rise 15 fall 1`: a returning node stays out until
//! it is really back). haproxy's log goes to its own file through rsyslog,
//! rotated daily and kept 10 days.
//!
//! Settings (all optional): `{"health_port": 29499, "inter_ms": 5000,
//! "rise": 15, "fall": 1, "log_days": 10}`.

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
use haseed::policy::plan::{File, NodePlan};
use haseed::policy::site::Site;

struct Component;

impl Guest for Component {
    type Decider = NodePort;

    fn info() -> PluginInfo {
        PluginInfo {
            name: "nodeport".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: env!("CARGO_PKG_DESCRIPTION").into(),
            settings_help: "{\"health_port\": 29499, \"inter_ms\": 5000, \"rise\": 15, \"fall\": 1, \"log_days\": 10}, all optional".into(),
            #[cfg(not(any(feature = "contract-0-1", feature = "contract-0-2")))]
            scope: Some(vec![
                "haproxy.backends.servers.check.port".into(),
                "haproxy.backends.servers.check.inter-ms".into(),
                "haproxy.backends.servers.check.rise".into(),
                "haproxy.backends.servers.check.fall".into(),
                "files".into(),
                "packages".into(),
            ]),
        }
    }
}

struct NodePort {
    health_port: u16,
    inter_ms: u32,
    rise: u32,
    fall: u32,
    log_days: u32,
}

fn refuse(field: &str, message: String) -> PolicyError {
    PolicyError {
        message,
        field: Some(field.into()),
    }
}

impl GuestDecider for NodePort {
    fn open(_site: Site, settings: String) -> Result<Decider, PolicyError> {
        let value: serde_json::Value = serde_json::from_str(if settings.trim().is_empty() {
            "{}"
        } else {
            &settings
        })
        .map_err(|e| refuse("settings", e.to_string()))?;
        let serde_json::Value::Object(table) = value else {
            return Err(refuse("settings", "must be a JSON object".into()));
        };
        let mut np = NodePort {
            health_port: 29499,
            inter_ms: 5000,
            rise: 15,
            fall: 1,
            log_days: 10,
        };
        for (key, value) in table {
            let field = format!("settings.{key}");
            let n = value
                .as_u64()
                .ok_or_else(|| refuse(&field, format!("must be a whole number, not {value}")))?;
            let within = |lo: u64, hi: u64| {
                if (lo..=hi).contains(&n) {
                    Ok(n)
                } else {
                    Err(refuse(&field, format!("{n} is not in {lo}..{hi}")))
                }
            };
            match key.as_str() {
                "health_port" => np.health_port = within(1, 65535)? as u16,
                "inter_ms" => np.inter_ms = within(100, 3_600_000)? as u32,
                "rise" => np.rise = within(1, 1000)? as u32,
                "fall" => np.fall = within(1, 1000)? as u32,
                "log_days" => np.log_days = within(1, 3650)? as u32,
                other => {
                    return Err(refuse(
                        "settings",
                        format!("unknown key {other:?} (expected health_port, inter_ms, rise, fall, log_days)"),
                    ))
                }
            }
        }
        Ok(Decider::new(np))
    }

    fn decide(&self, _node: u32, proposed: NodePlan) -> Result<NodePlan, PolicyError> {
        let mut plan = proposed;
        let Some(haproxy) = plan.haproxy.as_mut() else {
            return Ok(plan);
        };
        let ranged: Vec<String> = haproxy
            .frontends
            .iter()
            .filter(|f| f.port_first != f.port_last)
            .map(|f| f.backend.clone())
            .collect();
        let mut tuned = 0;
        for backend in haproxy
            .backends
            .iter_mut()
            .filter(|b| ranged.contains(&b.name))
        {
            for server in &mut backend.servers {
                if let Some(check) = server.check.as_mut() {
                    check.port = Some(self.health_port);
                    check.inter_ms = self.inter_ms;
                    check.rise = self.rise;
                    check.fall = self.fall;
                    tuned += 1;
                }
            }
        }
        // haproxy logs to /dev/log (local0): give it a file of its own.
        plan.files.push(File {
            path: "/etc/rsyslog.d/49-haproxy.conf".into(),
            mode: 0o644,
            owner: "root:root".into(),
            content:
                "# Generated by haseed (nodeport plugin): haproxy's log in a file of its own.\n\
                      $AddUnixListenSocket /var/lib/haproxy/dev/log\n\
                      :programname, startswith, \"haproxy\" {\n  /var/log/haproxy.log\n  stop\n}\n"
                    .into(),
        });
        plan.files.push(File {
            path: "/etc/logrotate.d/haproxy".into(),
            mode: 0o644,
            owner: "root:root".into(),
            content: format!(
                "# Generated by haseed (nodeport plugin).\n/var/log/haproxy.log {{\n    daily\n    rotate {}\n    missingok\n    notifempty\n    compress\n    delaycompress\n    postrotate\n        [ ! -x /usr/lib/rsyslog/rsyslog-rotate ] || /usr/lib/rsyslog/rsyslog-rotate\n    endscript\n}}\n",
                self.log_days
            ),
        });
        for pkg in ["rsyslog", "logrotate"] {
            if !plan.packages.iter().any(|p| p == pkg) {
                plan.packages.push(pkg.into());
            }
        }
        eprintln!(
            "nodeport: {} worker checks on port {}",
            tuned, self.health_port
        );
        Ok(plan)
    }
}

export!(Component);
