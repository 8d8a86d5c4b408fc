// Shared by every hostile test plugin (each crate `include!`s it and defines
// `misbehave` and `SCOPE`, its declared change scope): the bindings, an `open`
// that accepts anything, and a `decide` that hands the proposed plan to the
// crate's `misbehave`. The crates stay separate components so each
// misbehaviour is tested on its own.

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
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: env!("CARGO_PKG_DESCRIPTION").into(),
            settings_help: "none".into(),
            // Each crate's own SCOPE: None for most, since the sandbox and the checker must hold
            // without a declared scope.
            scope: SCOPE.map(|paths| paths.iter().map(|p| p.to_string()).collect()),
        }
    }
}

struct Hostile;

impl GuestDecider for Hostile {
    fn open(_site: Site, _settings: String) -> Result<Decider, PolicyError> {
        Ok(Decider::new(Hostile))
    }

    fn decide(&self, _node: u32, proposed: NodePlan) -> Result<NodePlan, PolicyError> {
        misbehave(proposed)
    }
}

export!(Component);
