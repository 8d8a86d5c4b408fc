//! Example site plugin: every node (or the nodes of the given roles) gets one more APT
//! repository, the site's own mirror, which cloud-init configures before it installs the
//! packages. Contract 0.2 and later (`apt-sources`); a plugin built against 0.1 cannot say this, and
//! haseed keeps such a source through a 0.1 plugin later in the chain (tests/example_plugins.rs).
//!
//! Settings: `{"name": "site-mirror", "source": "deb http://mirror.lan/debian bookworm main",
//! "key": "-----BEGIN PGP PUBLIC KEY BLOCK-----...", "roles": ["master"]}`; `key` and `roles`
//! are optional (no roles: every node).

wit_bindgen::generate!({
    path: "../../wit",
    world: "policy-plugin",
});

use exports::haseed::policy::policy::{Decider, Guest, GuestDecider, PluginInfo, PolicyError};
use haseed::policy::plan::{AptSource, NodePlan};
use haseed::policy::site::{Role, Site};

/// The role's name as the site file spells it.
fn role_name(role: &Role) -> &'static str {
    match role {
        Role::Lb => "lb",
        Role::Master => "master",
        Role::Worker => "worker",
        Role::Controller => "controller",
        Role::Db => "db",
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    name: String,
    source: String,
    #[serde(default)]
    key: Option<String>,
    /// Role names as the site spells them ("lb", "master", ...); none: every node.
    #[serde(default)]
    roles: Vec<String>,
}

struct Component;

impl Guest for Component {
    type Decider = Mirror;

    fn info() -> PluginInfo {
        PluginInfo {
            name: "apt-mirror".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Adds the site's own APT mirror to the nodes' repositories".into(),
            settings_help: "JSON object: \"name\" (the source's name), \"source\" (one APT source \
                            line; $KEY_FILE is the key's path), optional \"key\" (ASCII-armored \
                            signing key) and \"roles\" (only nodes with one of these roles)"
                .into(),
            scope: Some(vec!["apt-sources".into()]),
        }
    }
}

struct Mirror {
    /// Whether the source goes to the node of each index.
    wanted: Vec<bool>,
    source: AptSource,
}

impl GuestDecider for Mirror {
    fn open(site: Site, settings: String) -> Result<Decider, PolicyError> {
        let settings: Settings = serde_json::from_str(&settings).map_err(|e| PolicyError {
            message: format!("settings: {e}"),
            field: Some("settings".into()),
        })?;
        let wanted = site
            .nodes
            .iter()
            .map(|n| {
                settings.roles.is_empty()
                    || n.roles
                        .iter()
                        .any(|r| settings.roles.iter().any(|w| w == role_name(r)))
            })
            .collect();
        Ok(Decider::new(Mirror {
            wanted,
            source: AptSource {
                name: settings.name,
                source: settings.source,
                key: settings.key,
            },
        }))
    }

    fn decide(&self, node: u32, mut plan: NodePlan) -> Result<NodePlan, PolicyError> {
        if self.wanted[node as usize]
            && !plan.apt_sources.iter().any(|s| s.name == self.source.name)
        {
            plan.apt_sources.push(self.source.clone());
        }
        Ok(plan)
    }
}

export!(Component);
