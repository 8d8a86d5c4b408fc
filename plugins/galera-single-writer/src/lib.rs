//! Example site plugin: Galera single writer, with the writer chosen by the
//! site. Writing to every Galera node at once invites certification conflicts
//! and deadlocks, so every haproxy backend whose servers are all `db` nodes
//! keeps one writer active and marks the others `backup`: they take over only
//! when the writer is down.
//!
//! The built-in default policy already does this with the first db node as
//! the writer (unless its `db_balance = "leastconn"` setting makes every node
//! active). This plugin is what a site adds on top to move the writer: to
//! drain the default writer for maintenance, or to put the writer next to
//! the controllers that write most. It also re-imposes a single writer after
//! a `leastconn` default (the balance stays whatever the plan says; with one
//! active server it does not matter).
//!
//! Settings (all optional): `{"writer": "db2"}`: the node that takes writes
//! (default: the first server of each backend).

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

use std::collections::HashSet;

use exports::haseed::policy::policy::{Decider, Guest, GuestDecider, PluginInfo, PolicyError};
use haseed::policy::plan::NodePlan;
use haseed::policy::site::{Role, Site};

struct Component;

impl Guest for Component {
    type Decider = SingleWriter;

    fn info() -> PluginInfo {
        PluginInfo {
            name: "galera-single-writer".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: env!("CARGO_PKG_DESCRIPTION").into(),
            settings_help:
                "{\"writer\": NODE} (optional; default: the first server of each db backend)".into(),
            #[cfg(not(any(feature = "contract-0-1", feature = "contract-0-2")))]
            scope: Some(vec!["haproxy.backends.servers.backup".into()]),
        }
    }
}

struct SingleWriter {
    /// Names of the nodes with role db (indexed once, in `open`).
    db_nodes: HashSet<String>,
    writer: Option<String>,
}

fn refuse(field: &str, message: String) -> PolicyError {
    PolicyError {
        message,
        field: Some(field.into()),
    }
}

impl GuestDecider for SingleWriter {
    fn open(site: Site, settings: String) -> Result<Decider, PolicyError> {
        let value: serde_json::Value = serde_json::from_str(if settings.trim().is_empty() {
            "{}"
        } else {
            &settings
        })
        .map_err(|e| refuse("settings", e.to_string()))?;
        let serde_json::Value::Object(table) = value else {
            return Err(refuse("settings", "must be a JSON object".into()));
        };
        let mut writer = None;
        for (key, value) in table {
            match (key.as_str(), value) {
                ("writer", serde_json::Value::String(name)) => writer = Some(name),
                ("writer", other) => {
                    return Err(refuse(
                        "settings.writer",
                        format!("must be a node name, not {other}"),
                    ))
                }
                (other, _) => {
                    return Err(refuse(
                        "settings",
                        format!("unknown key {other:?} (expected \"writer\")"),
                    ))
                }
            }
        }
        let db_nodes: HashSet<String> = site
            .nodes
            .into_iter()
            .filter(|n| n.roles.contains(&Role::Db))
            .map(|n| n.name)
            .collect();
        if let Some(w) = &writer {
            if !db_nodes.contains(w) {
                return Err(refuse(
                    "settings.writer",
                    format!("{w} is not a node with role db"),
                ));
            }
        }
        Ok(Decider::new(SingleWriter { db_nodes, writer }))
    }

    fn decide(&self, _node: u32, proposed: NodePlan) -> Result<NodePlan, PolicyError> {
        let mut plan = proposed;
        let Some(haproxy) = plan.haproxy.as_mut() else {
            return Ok(plan);
        };
        for backend in &mut haproxy.backends {
            let all_db = !backend.servers.is_empty()
                && backend
                    .servers
                    .iter()
                    .all(|s| self.db_nodes.contains(&s.name));
            if !all_db {
                continue;
            }
            let writer = match &self.writer {
                Some(w) if backend.servers.iter().any(|s| &s.name == w) => w.clone(),
                _ => backend.servers[0].name.clone(),
            };
            for server in &mut backend.servers {
                server.backup = server.name != writer;
            }
            eprintln!(
                "galera-single-writer: {}: writer {writer}, {} backup(s)",
                backend.name,
                backend.servers.len() - 1
            );
        }
        Ok(plan)
    }
}

export!(Component);
