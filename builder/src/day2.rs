//! Day 2 (issue 20): what it takes to move a running node from one build to the next.
//!
//! This is the shared action plan that `haseed apply` and the lab's config-change scenario
//! both follow, so the lab proves the very steps apply takes. It is pure: it compares what a
//! node holds ([`NodeState`], the record `apply` keeps on the node as
//! `/var/lib/haseed/applied.json`) with what the new build puts there, and derives
//! - which managed files are added, changed or removed;
//! - the packages to install before any file that needs them is swapped in;
//! - how each changed file is validated on the node before the swap (its own tools);
//! - the least disruptive action that makes each change take effect, with the reason
//!   (reload where the daemon re-reads its configuration without dropping anything, restart
//!   only where nothing less takes effect);
//! - changes that cannot be applied to a running node (its name, address, platform or network
//!   configuration: cloud-init applies those once, at first boot), refused with what to do;
//! - the order of nodes: each VIP's backups first, its active holder last ([`roll_order`]).
//!
//! Transport (OpenSSH), staging and rollback live with the `apply` command; nothing here runs
//! a process.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::contract::{Node, NodePlan, Site};
use crate::policy::sha256_hex;
use crate::render::{NodeArtifacts, HAPROXY_CFG, KEEPALIVED_CONF};

/// A managed file as recorded: enough to tell a change, not the content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    pub sha256: String,
    pub mode: u32,
    pub owner: String,
}

/// What a node holds from haseed: the build last applied, as recorded on the node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    pub node: String,
    pub address: String,
    pub platform: String,
    /// sha256 of the network configuration cloud-init applied at first boot.
    pub network_sha256: String,
    pub files: BTreeMap<String, FileMeta>,
    pub packages: BTreeSet<String>,
    pub services: BTreeSet<String>,
}

impl NodeState {
    /// The state a node is in once `artifacts` (the build of `node` with `plan`) is applied.
    pub fn of(node: &Node, plan: &NodePlan, artifacts: &NodeArtifacts) -> NodeState {
        NodeState {
            node: node.name.clone(),
            address: node.address.clone(),
            platform: node.platform.as_str().to_string(),
            network_sha256: sha256_hex(artifacts.network_config.as_bytes()),
            files: artifacts
                .files
                .iter()
                .map(|f| {
                    let meta = FileMeta {
                        sha256: sha256_hex(f.content.as_bytes()),
                        mode: f.mode,
                        owner: f.owner.clone(),
                    };
                    (f.path.clone(), meta)
                })
                .collect(),
            packages: plan.packages.iter().cloned().collect(),
            // Full unit names, as the steps name them: plans may say "haproxy".
            services: plan.services.iter().map(|s| unit_name(s)).collect(),
        }
    }

    /// The digest of this state (of its canonical JSON): equal digests, nothing to apply.
    pub fn digest(&self) -> String {
        sha256_hex(&serde_json::to_vec(self).expect("a state serialises"))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileChange {
    Added,
    Changed,
    Removed,
}

/// One step on the node, in the order they are taken.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Step {
    /// `apt-get install` before the files that need the packages are swapped in.
    Install { packages: Vec<String> },
    /// Run on the staged copy (`{}` stands for its path); a failure stops the node's apply
    /// before anything is swapped.
    Validate { path: String, command: Vec<String> },
    /// Every staged file into place at once; removed files out.
    Swap,
    /// `systemctl daemon-reload`: a unit or drop-in changed.
    DaemonReload,
    /// A command that applies a changed file without a unit (e.g. `sysctl -p FILE`).
    Run { command: Vec<String>, why: String },
    /// `systemctl reload UNIT` (units are named in full: `haproxy.service`).
    Reload { unit: String, why: String },
    /// `systemctl restart UNIT`: nothing less takes effect.
    Restart { unit: String, why: String },
    /// `systemctl enable --now UNIT`: a service the new build adds.
    Enable { unit: String },
    /// `systemctl disable --now UNIT`: a service the new build drops.
    Disable { unit: String },
}

/// What moving one node to the new build takes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NodeActions {
    pub node: String,
    pub files: Vec<(String, FileChange)>,
    pub steps: Vec<Step>,
    /// Changes a running node cannot take, each with what to do instead. Non-empty: nothing is
    /// applied to this node.
    pub refused: Vec<String>,
    /// Whether a step changes keepalived's VRRP configuration: on the VIP's active holder the
    /// VIP is handed to a peer first.
    pub touches_vrrp: bool,
    /// Changes that take effect only later, said so the user is not surprised.
    pub notes: Vec<String>,
}

impl NodeActions {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.steps.is_empty() && self.refused.is_empty()
    }
}

/// How a changed file takes effect: the validation on the node and the action after the swap.
struct Effect {
    validate: Option<Vec<String>>,
    action: Option<Step>,
    note: Option<String>,
}

fn effect(path: &str, services: &BTreeSet<String>) -> Effect {
    let restart = |unit: &str, why: &str| Effect {
        validate: None,
        action: Some(Step::Restart {
            unit: unit.to_string(),
            why: why.to_string(),
        }),
        note: None,
    };
    let quiet = |note: Option<String>| Effect {
        validate: None,
        action: None,
        note,
    };
    if path == HAPROXY_CFG {
        return Effect {
            validate: Some(strings(&["haproxy", "-c", "-f", "{}"])),
            // haproxy(1) management guide, "Stopping and restarting HAProxy": in master-worker
            // mode (Debian's unit: -Ws) a reload starts new workers on the listening sockets the
            // master keeps, and the old workers finish their connections.
            action: Some(Step::Reload {
                unit: "haproxy.service".into(),
                why: "haproxy re-reads its configuration on reload; the master keeps the \
                      listeners and old workers finish their connections"
                    .into(),
            }),
            note: None,
        };
    }
    if path == KEEPALIVED_CONF {
        return Effect {
            validate: Some(strings(&["keepalived", "--config-test", "-f", "{}"])),
            // keepalived(8), SIGNALS: SIGHUP reloads the configuration.
            action: Some(Step::Reload {
                unit: "keepalived.service".into(),
                why: "keepalived re-reads its configuration on SIGHUP (systemctl reload)".into(),
            }),
            note: None,
        };
    }
    if path.starts_with("/etc/sysctl.d/") {
        return Effect {
            validate: None,
            action: Some(Step::Run {
                command: strings(&["sysctl", "-p", path]),
                why: "sysctl.d files are read at boot; sysctl -p applies this one now".into(),
            }),
            note: None,
        };
    }
    if path.starts_with("/etc/modules-load.d/") {
        return restart(
            "systemd-modules-load.service",
            "systemd-modules-load loads the modules listed in modules-load.d",
        );
    }
    if path.starts_with("/etc/systemd/timesyncd.conf.d/") {
        return restart(
            "systemd-timesyncd.service",
            "timesyncd reads its configuration only at start",
        );
    }
    if let Some(rest) = path.strip_prefix("/etc/systemd/system/") {
        // A drop-in: UNIT.d/NAME.conf.
        if let Some((unit, _)) = rest.split_once(".d/") {
            return restart(
                unit,
                "systemd applies a changed drop-in at daemon-reload, and its Exec lines at the \
                 unit's next start (systemd.unit(5))",
            );
        }
        if rest.contains("@.") {
            return quiet(Some(format!(
                "{path}: a template unit; its next instance uses it"
            )));
        }
        if rest.ends_with(".socket") || services.contains(rest) {
            return restart(rest, "the unit itself changed");
        }
        return quiet(None);
    }
    if path.starts_with("/etc/mysql/mariadb.conf.d/") {
        return restart(
            "mariadb.service",
            "MariaDB reads its option files only at start (one Galera node at a time)",
        );
    }
    if path == "/etc/containerd/config.toml" {
        return restart(
            "containerd.service",
            "containerd reads its configuration only at start",
        );
    }
    if path.starts_with("/etc/kubeadm/") {
        return quiet(Some(format!(
            "{path}: kubeadm reads it at init and join; a running control plane is not \
             reconfigured from it"
        )));
    }
    // haseed's own scripts and settings: the unit of the same name runs them (a watcher that
    // loops, a oneshot that configures); anything else reads them at each use.
    let stem = path
        .rsplit('/')
        .next()
        .unwrap_or(path)
        .split('.')
        .next()
        .unwrap_or("");
    let own = if stem.starts_with("haseed-") {
        format!("{stem}.service")
    } else {
        format!("haseed-{stem}.service")
    };
    if (path.starts_with("/usr/local/sbin/haseed-") || path.starts_with("/etc/haseed/"))
        && services.contains(&own)
    {
        return restart(&own, "the unit runs this file and reads it only at start");
    }
    quiet(None)
}

/// `name` as systemd names the unit: a bare name is a service.
pub fn unit_name(name: &str) -> String {
    if name.contains('.') {
        name.to_string()
    } else {
        format!("{name}.service")
    }
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// The steps that move a node from `before` (what it holds) to `after` (the new build).
pub fn node_actions(before: &NodeState, after: &NodeState) -> NodeActions {
    let mut out = NodeActions {
        node: after.node.clone(),
        ..NodeActions::default()
    };
    let reflash = |what: &str, was: &str, now: &str| {
        format!(
            "its {what} changes ({was} -> {now}): cloud-init applies it at first boot only. \
             Re-flash the card (Raspberry Pi, VM image) or replace the instance (AWS) with the \
             new build"
        )
    };
    if before.node != after.node {
        out.refused.push(reflash("name", &before.node, &after.node));
    }
    if before.address != after.address {
        out.refused
            .push(reflash("address", &before.address, &after.address));
    }
    if before.platform != after.platform {
        out.refused
            .push(reflash("platform", &before.platform, &after.platform));
    }
    if before.network_sha256 != after.network_sha256 {
        out.refused.push(reflash(
            "network configuration",
            "the network-config it booted with",
            "another",
        ));
    }
    if !out.refused.is_empty() {
        return out;
    }

    for (path, meta) in &after.files {
        match before.files.get(path) {
            None => out.files.push((path.clone(), FileChange::Added)),
            Some(old) if old != meta => out.files.push((path.clone(), FileChange::Changed)),
            Some(_) => {}
        }
    }
    for path in before.files.keys() {
        if !after.files.contains_key(path) {
            out.files.push((path.clone(), FileChange::Removed));
        }
    }
    out.files.sort();

    let new_packages: Vec<String> = after
        .packages
        .difference(&before.packages)
        .cloned()
        .collect();
    if !new_packages.is_empty() {
        out.steps.push(Step::Install {
            packages: new_packages,
        });
    }
    let dropped: Vec<&String> = before.packages.difference(&after.packages).collect();
    if !dropped.is_empty() {
        out.notes.push(format!(
            "packages no longer in the build stay installed: {}",
            dropped
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }

    let mut actions: Vec<Step> = Vec::new();
    let mut daemon_reload = false;
    for (path, change) in &out.files {
        let e = effect(path, &after.services);
        if *change != FileChange::Removed {
            if let Some(command) = e.validate {
                out.steps.push(Step::Validate {
                    path: path.clone(),
                    command,
                });
            }
        }
        if path == KEEPALIVED_CONF {
            out.touches_vrrp = true;
        }
        daemon_reload |= path.starts_with("/etc/systemd/system/");
        if let Some(note) = e.note {
            out.notes.push(note);
        }
        if let Some(action) = e.action {
            if !actions.contains(&action) {
                actions.push(action);
            }
        }
    }
    if !out.files.is_empty() {
        out.steps.push(Step::Swap);
    }
    if daemon_reload {
        out.steps.push(Step::DaemonReload);
    }
    // A restart of a unit makes its reload pointless: keep the restart only.
    let restarted: BTreeSet<String> = actions
        .iter()
        .filter_map(|a| match a {
            Step::Restart { unit, .. } => Some(unit.clone()),
            _ => None,
        })
        .collect();
    actions.retain(|a| !matches!(a, Step::Reload { unit, .. } if restarted.contains(unit)));
    let enabled: Vec<&String> = after.services.difference(&before.services).collect();
    // A service the build adds is started by enable --now, not restarted.
    actions.retain(|a| !matches!(a, Step::Restart { unit, .. } if enabled.contains(&unit)));
    out.steps.extend(actions);
    for unit in enabled {
        out.steps.push(Step::Enable { unit: unit.clone() });
    }
    for unit in before.services.difference(&after.services) {
        out.steps.push(Step::Disable { unit: unit.clone() });
    }
    out
}

/// One thing done to a node, in the order [`node_ops`] lists them: what `haseed apply` sends
/// to the node (`apply::apply_body`) and what the lab's config-change scenarios do to their
/// nodes (`lab::change`), so the lab proves the very sequence apply runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeOp {
    /// `apt-get install`, before anything is staged.
    Install {
        packages: Vec<String>,
    },
    /// Every added or changed file written next to its target.
    Stage,
    /// A staged copy checked by the node's own tool (`{}` stands for its path).
    Validate {
        path: String,
        command: Vec<String>,
    },
    /// The node holds these VIPs and its keepalived configuration changes: keepalived stops
    /// first and a peer takes the VIPs (its stop hooks run), so the VIP never sits on a
    /// keepalived that reloads into a new priority or advert interval.
    HandOver {
        vips: Vec<String>,
    },
    /// The staged files into place, removed files out.
    Swap,
    DaemonReload,
    Run {
        command: Vec<String>,
    },
    Reload {
        unit: String,
    },
    Restart {
        unit: String,
    },
    Enable {
        unit: String,
    },
    Disable {
        unit: String,
    },
    /// keepalived started again after a hand-over, with its new configuration.
    Start {
        unit: String,
    },
    /// Every unit touched is active (and haproxy has its new worker) before the node counts as
    /// done and the next node's turn comes.
    Healthy {
        units: Vec<String>,
    },
}

/// The unit a hand-over stops and starts again.
pub const KEEPALIVED_UNIT: &str = "keepalived.service";

/// The sequence that moves one node: `actions`' steps, with the hand-over of `hand_over` (the
/// VIPs the node holds: see [`roll_order`]) around the swap when its keepalived configuration
/// changes. After a hand-over keepalived is started, not reloaded or restarted.
pub fn node_ops(actions: &NodeActions, hand_over: &[String]) -> Vec<NodeOp> {
    let handing = !hand_over.is_empty() && actions.touches_vrrp;
    let mut ops = Vec::new();
    for s in &actions.steps {
        if let Step::Install { packages } = s {
            ops.push(NodeOp::Install {
                packages: packages.clone(),
            });
        }
    }
    if actions.files.iter().any(|(_, c)| *c != FileChange::Removed) {
        ops.push(NodeOp::Stage);
    }
    for s in &actions.steps {
        if let Step::Validate { path, command } = s {
            ops.push(NodeOp::Validate {
                path: path.clone(),
                command: command.clone(),
            });
        }
    }
    if handing {
        ops.push(NodeOp::HandOver {
            vips: hand_over.to_vec(),
        });
    }
    let mut healthy = Vec::new();
    for s in &actions.steps {
        ops.push(match s {
            Step::Install { .. } | Step::Validate { .. } => continue,
            Step::Swap => NodeOp::Swap,
            Step::DaemonReload => NodeOp::DaemonReload,
            Step::Run { command, .. } => NodeOp::Run {
                command: command.clone(),
            },
            Step::Reload { unit, .. } | Step::Restart { unit, .. }
                if handing && unit == KEEPALIVED_UNIT =>
            {
                continue
            }
            Step::Reload { unit, .. } => NodeOp::Reload { unit: unit.clone() },
            Step::Restart { unit, .. } => NodeOp::Restart { unit: unit.clone() },
            Step::Enable { unit } => NodeOp::Enable { unit: unit.clone() },
            Step::Disable { unit } => NodeOp::Disable { unit: unit.clone() },
        });
        if let Step::Reload { unit, .. } | Step::Restart { unit, .. } | Step::Enable { unit } = s {
            healthy.push(unit.clone());
        }
    }
    if handing {
        ops.push(NodeOp::Start {
            unit: KEEPALIVED_UNIT.into(),
        });
        if !healthy.iter().any(|u| u == KEEPALIVED_UNIT) {
            healthy.push(KEEPALIVED_UNIT.into());
        }
    }
    ops.push(NodeOp::Healthy { units: healthy });
    ops
}

/// The order nodes are changed in: groups that may run side by side, each a sequence.
///
/// The holders of one VIP form a group (nodes holding several VIPs join their groups): its
/// backups go first, one at a time, and the active holder (`holder(vip index)`, asked of the
/// nodes at apply time) last, so a client never loses both. Other nodes of one role form a
/// group of their own (one Galera or control-plane node at a time). Only `changed` nodes
/// appear. Linear in the site's size.
pub fn roll_order(
    site: &Site,
    changed: &[u32],
    holder: impl Fn(usize) -> Option<u32>,
) -> Vec<Vec<u32>> {
    let n = site.nodes.len();
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    let mut union = |a: usize, b: usize| {
        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
        if ra != rb {
            parent[rb] = ra;
        }
    };
    let mut holds_vip = vec![false; n];
    for vip in &site.vips {
        for pair in vip.holders.windows(2) {
            union(pair[0] as usize, pair[1] as usize);
        }
        for h in &vip.holders {
            holds_vip[*h as usize] = true;
        }
    }
    // Non-holders: grouped by their first role.
    let mut first_of_role: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, node) in site.nodes.iter().enumerate() {
        if holds_vip[i] {
            continue;
        }
        let role = node.roles.first().map_or("", |r| r.as_str());
        match first_of_role.get(role) {
            Some(&first) => union(first, i),
            None => {
                first_of_role.insert(role, i);
            }
        }
    }
    // Active holders go last in their group.
    let mut active = vec![false; n];
    for v in 0..site.vips.len() {
        if let Some(h) = holder(v) {
            active[h as usize] = true;
        }
    }
    let mut groups: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
    let mut seen = vec![false; n];
    for &i in changed {
        if std::mem::replace(&mut seen[i as usize], true) {
            continue;
        }
        let root = find(&mut parent, i as usize);
        groups.entry(root).or_default().push(i);
    }
    groups
        .into_values()
        .map(|mut g| {
            g.sort_by_key(|&i| (active[i as usize], i));
            g
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example site built twice, the second time after `edit` of its text: each node's
    /// state before and after.
    fn states(edit: impl Fn(&str) -> String) -> (Site, Vec<NodeState>, Vec<NodeState>) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("assets/examples/pi-k8s/site.toml");
        let text = std::fs::read_to_string(&path).expect("example");
        let build = |text: &str| {
            let inv = crate::inventory::parse(&path, text).expect("site parses");
            let host =
                crate::policy::Host::new(None, crate::policy::Limits::default()).expect("host");
            let chain = crate::pipeline::load_chain(&host, &inv).expect("chain");
            let (plans, _) = crate::pipeline::plan(&host, &inv, &chain).expect("plans");
            let renderer = crate::render::Renderer::new();
            let states: Vec<NodeState> = inv
                .site
                .nodes
                .iter()
                .enumerate()
                .map(|(i, node)| {
                    let artifacts = renderer
                        .render_node_with(&inv.site, i as u32, &plans[i], &inv.node_extras[i])
                        .expect("renders");
                    NodeState::of(node, &plans[i], &artifacts)
                })
                .collect();
            (inv.site, states)
        };
        let (site, before) = build(&text);
        let (_, after) = build(&edit(&text));
        (site, before, after)
    }

    #[test]
    fn the_same_build_needs_nothing() {
        let (_, before, after) = states(|t| t.to_string());
        for (b, a) in before.iter().zip(&after) {
            assert_eq!(b.digest(), a.digest());
            assert!(node_actions(b, a).is_empty(), "{}", b.node);
        }
    }

    /// A changed health check reaches haproxy.cfg only: validated by haproxy itself, then a
    /// reload, never a restart; the masters are untouched.
    #[test]
    fn an_haproxy_change_is_validated_then_reloaded() {
        let (_, before, after) = states(|t| {
            let edited = t.replacen("[[service]]", "[[service]]\ncheck = { rise = 7 }", 1);
            assert_ne!(edited, t);
            edited
        });
        let lb1 = node_actions(&before[0], &after[0]);
        assert_eq!(lb1.node, "lb1");
        assert_eq!(
            lb1.files,
            [(HAPROXY_CFG.to_string(), FileChange::Changed)],
            "{lb1:#?}"
        );
        assert_eq!(
            lb1.steps,
            [
                Step::Validate {
                    path: HAPROXY_CFG.into(),
                    command: strings(&["haproxy", "-c", "-f", "{}"]),
                },
                Step::Swap,
                effect(HAPROXY_CFG, &BTreeSet::new())
                    .action
                    .expect("reload"),
            ]
        );
        assert!(!lb1.touches_vrrp);
        let masters: Vec<_> = before
            .iter()
            .zip(&after)
            .filter(|(b, _)| b.node.starts_with("master"))
            .collect();
        assert!(!masters.is_empty());
        for (b, a) in masters {
            assert!(node_actions(b, a).is_empty(), "{}", b.node);
        }
    }

    #[test]
    fn drop_ins_restart_their_unit_and_scripts_restart_the_unit_that_runs_them() {
        let (_, before, _) = states(|t| t.to_string());
        let lb1 = &before[0];
        let mut after = lb1.clone();
        let touch = |s: &mut NodeState, path: &str| {
            s.files
                .get_mut(path)
                .unwrap_or_else(|| panic!("{path}"))
                .sha256 = "0".repeat(64);
        };
        touch(
            &mut after,
            "/etc/systemd/system/haproxy.service.d/50-haseed-failover.conf",
        );
        touch(&mut after, "/usr/local/sbin/haseed-haproxy-watch");
        touch(&mut after, HAPROXY_CFG);
        let a = node_actions(lb1, &after);
        let units: Vec<(&str, &str)> = a
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Reload { unit, .. } => Some(("reload", unit.as_str())),
                Step::Restart { unit, .. } => Some(("restart", unit.as_str())),
                Step::DaemonReload => Some(("daemon-reload", "")),
                _ => None,
            })
            .collect();
        // haproxy's drop-in needs a restart, which makes its reload pointless.
        assert_eq!(
            units,
            [
                ("daemon-reload", ""),
                ("restart", "haproxy.service"),
                ("restart", "haseed-haproxy-watch.service"),
            ],
            "{a:#?}"
        );
    }

    #[test]
    fn a_new_address_or_platform_is_refused_with_what_to_do() {
        let (_, before, after) = states(|t| t.to_string());
        let mut moved = after[0].clone();
        moved.address = "192.168.3.99".into();
        moved.platform = "ubuntu".into();
        let a = node_actions(&before[0], &moved);
        assert_eq!(a.refused.len(), 2, "{a:#?}");
        assert!(a.refused[0].contains("address changes"), "{:?}", a.refused);
        assert!(
            a.refused[1].contains("Re-flash the card"),
            "{:?}",
            a.refused
        );
        assert!(a.steps.is_empty() && a.files.is_empty());
    }

    #[test]
    fn packages_come_first_and_new_services_are_enabled_not_restarted() {
        let (_, before, _) = states(|t| t.to_string());
        let lb1 = &before[0];
        let mut after = lb1.clone();
        after.packages.insert("chrony".into());
        after.services.insert("haseed-extra.service".into());
        after.files.insert(
            "/etc/systemd/system/haseed-extra.service".into(),
            FileMeta {
                sha256: "1".repeat(64),
                mode: 0o644,
                owner: "root:root".into(),
            },
        );
        let a = node_actions(lb1, &after);
        assert_eq!(
            a.steps,
            [
                Step::Install {
                    packages: vec!["chrony".into()]
                },
                Step::Swap,
                Step::DaemonReload,
                Step::Enable {
                    unit: "haseed-extra.service".into()
                },
            ]
        );
        // A package alone: installed, nothing swapped.
        let mut more = lb1.clone();
        more.packages.insert("chrony".into());
        assert_eq!(
            node_actions(lb1, &more).steps,
            [Step::Install {
                packages: vec!["chrony".into()]
            }]
        );
        // And the way back: disabled, the package kept with a note.
        let back = node_actions(&after, lb1);
        assert!(back.steps.contains(&Step::Disable {
            unit: "haseed-extra.service".into()
        }));
        assert!(
            back.notes[0].contains("stay installed: chrony"),
            "{back:#?}"
        );
    }

    /// Backups before the active holder; masters one at a time, in a group of their own.
    #[test]
    fn backups_go_first_and_the_active_holder_last() {
        let (site, _, _) = states(|t| t.to_string());
        let index = |name: &str| {
            site.nodes
                .iter()
                .position(|n| n.name == name)
                .unwrap_or_else(|| panic!("{name}")) as u32
        };
        let all: Vec<u32> = (0..site.nodes.len() as u32).collect();
        let lb1 = index("lb1");
        let lb2 = index("lb2");
        let order = roll_order(&site, &all, |_| Some(lb1));
        let lbs = order.iter().find(|g| g.contains(&lb1)).expect("lb group");
        assert_eq!(lbs, &[lb2, lb1]);
        let order = roll_order(&site, &all, |_| Some(lb2));
        let lbs = order.iter().find(|g| g.contains(&lb1)).expect("lb group");
        assert_eq!(lbs, &[lb1, lb2]);
        let masters = order
            .iter()
            .find(|g| g.contains(&index("master1")))
            .expect("masters");
        assert_eq!(masters.len(), 3, "{order:?}");
        assert!(!masters.contains(&lb1));
        // Only what changed is rolled.
        assert_eq!(roll_order(&site, &[lb2], |_| Some(lb1)), [vec![lb2]]);
    }
}
