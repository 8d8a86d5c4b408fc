//! Plugins built against an earlier contract, run through an adapter (issue 22 item 1).
//!
//! Every contract version this host has shipped is kept in `wit/previous/VERSION/` and has
//! its own generated bindings (`contract::v0_1`, ...). A plugin built against one of them
//! is linked with those bindings; around each call the adapter lowers the host's site and
//! plan into that version's view (what the version cannot express is left out) and lifts
//! the plugin's plan back into the current one, where every field the version lacks keeps
//! the value the plan had before the call (what the previous link of the chain decided).
//!
//! The conversions go through serde: the generated types of two versions carry the same
//! field and case names wherever the contract did not change, so one JSON round trip plus
//! the version's edit is the whole adapter. Lifting into the current type, a field the
//! edit forgot to fill fails loudly (a deserialisation error naming it). Lowering, serde
//! would drop a field the older type lacks by itself; the edits name those fields anyway,
//! so what each version loses is written in one place.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use wasmtime::component::ResourceAny;
use wasmtime::Store;

use super::HostState;
use crate::contract::{self, v0_1, v0_2, NodePlan, PluginInfo, PolicyRefusal, Site};

/// A contract this host runs a plugin through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contract {
    /// The host's own version (or an older patch of it): no adapter.
    Current,
    /// haseed:policy@0.1.0: no VIP `aws` move in the site, no `apt-sources` in plans, no
    /// declared change scope.
    V0_1,
    /// haseed:policy@0.2.0: no declared change scope.
    V0_2,
}

/// The earlier versions this host adapts, each with what a plugin built against it cannot see
/// or decide (`plugin inspect` says it).
pub const ADAPTED: &[(&str, &str)] = &[
    (
        "0.1.0",
        "it does not see how a VIP moves on AWS and does not decide APT sources (its plans keep \
         the APT sources the previous plugin set); it declares no change scope, so it may change \
         any field unless the site's `scope` narrows it",
    ),
    (
        "0.2.0",
        "it declares no change scope, so it may change any field unless the site's `scope` \
         narrows it",
    ),
];

impl Contract {
    /// The contract a plugin built against `version` ("0.1.0") runs through, if any.
    pub fn of(version: &str) -> Option<Contract> {
        if super::wit_compatible(version) {
            return Some(Contract::Current);
        }
        match version {
            "0.1.0" => Some(Contract::V0_1),
            "0.2.0" => Some(Contract::V0_2),
            _ => None,
        }
    }

    /// "native" or "through the adapter 0.1.0 -> 0.3.0: what it cannot see or decide".
    pub fn describe(self) -> String {
        let version = match self {
            Contract::Current => return "native".to_string(),
            Contract::V0_1 => "0.1.0",
            Contract::V0_2 => "0.2.0",
        };
        format!(
            "through the adapter {version} -> {}: {}",
            contract::WIT_VERSION,
            adapted_loss(version)
        )
    }
}

/// What a plugin built against `version` cannot see or decide ([`ADAPTED`]).
fn adapted_loss(version: &str) -> &'static str {
    ADAPTED
        .iter()
        .find(|(v, _)| *v == version)
        .map(|(_, loss)| *loss)
        .unwrap_or("")
}

/// A 0.1 refusal as the current type (the record did not change).
fn refusal_from_v0_1(r: v0_1::exports::haseed::policy::policy::PolicyError) -> PolicyRefusal {
    PolicyRefusal {
        message: r.message,
        field: r.field,
    }
}

/// A 0.2 refusal as the current type (the record did not change).
fn refusal_from_v0_2(r: v0_2::exports::haseed::policy::policy::PolicyError) -> PolicyRefusal {
    PolicyRefusal {
        message: r.message,
        field: r.field,
    }
}

/// A plugin linked with the bindings of its own contract.
#[derive(Clone)]
pub(super) enum Pre {
    Current(contract::PolicyPluginPre<HostState>),
    V0_1(v0_1::PolicyPluginPre<HostState>),
    V0_2(v0_2::PolicyPluginPre<HostState>),
}

/// One instance of a plugin, called with the current contract's types.
pub(super) enum Instance {
    Current(contract::PolicyPlugin),
    V0_1(v0_1::PolicyPlugin),
    V0_2(v0_2::PolicyPlugin),
}

impl Pre {
    pub(super) fn contract(&self) -> Contract {
        match self {
            Pre::Current(_) => Contract::Current,
            Pre::V0_1(_) => Contract::V0_1,
            Pre::V0_2(_) => Contract::V0_2,
        }
    }

    pub(super) fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Instance> {
        Ok(match self {
            Pre::Current(pre) => Instance::Current(pre.instantiate(store)?),
            Pre::V0_1(pre) => Instance::V0_1(pre.instantiate(store)?),
            Pre::V0_2(pre) => Instance::V0_2(pre.instantiate(store)?),
        })
    }
}

impl Instance {
    pub(super) fn info(&self, store: &mut Store<HostState>) -> wasmtime::Result<PluginInfo> {
        match self {
            Instance::Current(i) => i.haseed_policy_policy().call_info(store),
            Instance::V0_1(i) => lift(&i.haseed_policy_policy().call_info(store)?, info_from_old),
            Instance::V0_2(i) => lift(&i.haseed_policy_policy().call_info(store)?, info_from_old),
        }
    }

    /// `decider.open(site, settings)`.
    pub(super) fn open(
        &self,
        store: &mut Store<HostState>,
        site: &Site,
        settings: &str,
    ) -> wasmtime::Result<Result<ResourceAny, PolicyRefusal>> {
        match self {
            Instance::Current(i) => i
                .haseed_policy_policy()
                .decider()
                .call_open(store, site, settings),
            Instance::V0_1(i) => {
                let site: v0_1::haseed::policy::site::Site = lift(site, site_to_v0_1)?;
                let opened = i
                    .haseed_policy_policy()
                    .decider()
                    .call_open(store, &site, settings)?;
                Ok(opened.map_err(refusal_from_v0_1))
            }
            Instance::V0_2(i) => {
                let site: v0_2::haseed::policy::site::Site = lift(site, |_| {})?;
                let opened = i
                    .haseed_policy_policy()
                    .decider()
                    .call_open(store, &site, settings)?;
                Ok(opened.map_err(refusal_from_v0_2))
            }
        }
    }

    /// `decider.decide(index, plan)`.
    pub(super) fn decide(
        &self,
        store: &mut Store<HostState>,
        decider: ResourceAny,
        index: u32,
        plan: &NodePlan,
    ) -> wasmtime::Result<Result<NodePlan, PolicyRefusal>> {
        match self {
            Instance::Current(i) => i
                .haseed_policy_policy()
                .decider()
                .call_decide(store, decider, index, plan),
            Instance::V0_1(i) => {
                let old: v0_1::haseed::policy::plan::NodePlan = lift(plan, plan_to_v0_1)?;
                let decided = i
                    .haseed_policy_policy()
                    .decider()
                    .call_decide(store, decider, index, &old)?;
                Ok(match decided {
                    Ok(new) => Ok(lift(&new, |v| plan_from_v0_1(v, plan))?),
                    Err(r) => Err(refusal_from_v0_1(r)),
                })
            }
            Instance::V0_2(i) => {
                let old: v0_2::haseed::policy::plan::NodePlan = lift(plan, |_| {})?;
                let decided = i
                    .haseed_policy_policy()
                    .decider()
                    .call_decide(store, decider, index, &old)?;
                Ok(match decided {
                    Ok(new) => Ok(lift(&new, |_| {})?),
                    Err(r) => Err(refusal_from_v0_2(r)),
                })
            }
        }
    }
}

/// `from` as another version's type, after `edit` on its JSON form.
fn lift<A: Serialize, B: DeserializeOwned>(
    from: &A,
    edit: impl FnOnce(&mut Value),
) -> wasmtime::Result<B> {
    let mut value =
        serde_json::to_value(from).map_err(|e| wasmtime::format_err!("contract adapter: {e}"))?;
    edit(&mut value);
    serde_json::from_value(value).map_err(|e| wasmtime::format_err!("contract adapter: {e}"))
}

/// 0.1 or 0.2 -> 0.3 plugin info: no declared change scope (the plugin may change any field
/// the site's `scope` grants, all of them when the site says nothing).
fn info_from_old(info: &mut Value) {
    if let Some(info) = info.as_object_mut() {
        info.insert("scope".to_string(), Value::Null);
    }
}

/// 0.3 (and 0.2) -> 0.1 site: VIPs lose `aws` (0.1 has no way to say how a VIP moves on AWS).
fn site_to_v0_1(site: &mut Value) {
    if let Some(vips) = site.get_mut("vips").and_then(Value::as_array_mut) {
        for vip in vips {
            if let Some(vip) = vip.as_object_mut() {
                vip.remove("aws");
            }
        }
    }
}

/// 0.3 (and 0.2) -> 0.1 plan: no `apt_sources`.
fn plan_to_v0_1(plan: &mut Value) {
    if let Some(plan) = plan.as_object_mut() {
        plan.remove("apt_sources");
    }
}

/// 0.1 -> 0.3 (and 0.2) plan: `apt_sources` as they were before the call.
fn plan_from_v0_1(plan: &mut Value, before: &NodePlan) {
    if let Some(plan) = plan.as_object_mut() {
        let kept = serde_json::to_value(&before.apt_sources).unwrap_or(Value::Array(Vec::new()));
        plan.insert("apt_sources".to_string(), kept);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_map_to_contracts() {
        assert_eq!(Contract::of(contract::WIT_VERSION), Some(Contract::Current));
        assert_eq!(Contract::of("0.1.0"), Some(Contract::V0_1));
        assert_eq!(Contract::of("0.2.0"), Some(Contract::V0_2));
        assert_eq!(Contract::of("0.1.1"), None, "never shipped");
        assert_eq!(Contract::of("0.4.0"), None, "newer than this host");
        assert_eq!(Contract::of("1.0.0"), None);
    }

    /// A 0.1 plan carries no APT sources: lifted back, the plan keeps those it had before the
    /// call; the site's VIP `aws` move is left out of 0.1's view, everything else kept.
    #[test]
    fn the_0_1_views_leave_out_and_the_lift_keeps_what_0_1_cannot_express() {
        let mut plan = NodePlan::empty("master1");
        plan.packages.push("kubelet".into());
        plan.apt_sources.push(contract::AptSource {
            name: "kubernetes".into(),
            source: "deb [signed-by=$KEY_FILE] https://pkgs.k8s.io/core:/stable:/v1.31/deb/ /"
                .into(),
            key: None,
        });
        let old: v0_1::haseed::policy::plan::NodePlan = lift(&plan, plan_to_v0_1).expect("lowered");
        assert_eq!(old.packages, plan.packages);
        let back: NodePlan = lift(&old, |v| plan_from_v0_1(v, &plan)).expect("lifted");
        assert_eq!(back, plan);
        // Without the lift's edit the 0.1 plan does not even parse as a current one.
        assert!(lift::<_, NodePlan>(&old, |_| {}).is_err());

        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/examples/aws/site.toml");
        let site = crate::inventory::load(&path).expect("example").site;
        assert!(
            site.vips.iter().any(|v| v.aws.is_some()),
            "the example moves a VIP on AWS"
        );
        let old: v0_1::haseed::policy::site::Site = lift(&site, site_to_v0_1).expect("lowered");
        assert_eq!(old.nodes.len(), site.nodes.len());
        assert_eq!(old.vips[0].address, site.vips[0].address);
    }
}
