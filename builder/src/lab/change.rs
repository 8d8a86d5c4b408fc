//! The config-change scenarios (issue 20): a change to the holders' build rolled onto the
//! running lab while the client probes every 20 ms.
//!
//! `change-*` roll it as `haseed apply` does, through the same action plan
//! ([`day2::node_actions`] and [`day2::node_ops`]): each file staged next to its target and
//! checked by the daemon's own tool, the backups first, the VIP's holder last, a hand-over
//! before its keepalived configuration changes, then the least disruptive action (haproxy's
//! master-worker reload, keepalived's SIGHUP) and a health check before the next node. The
//! lab carries the ops out itself, as it runs the drop-ins' hooks: there is no systemd here.
//!
//! `restart-both` and `kolla-restart` make the same haproxy change the ways other tools do, for
//! comparison (reference figures, not judged): `systemctl restart haproxy` on both load
//! balancers at once (an Ansible handler notified on every host), and kolla-ansible's order
//! (its loadbalancer role's handlers: each backup's haproxy stopped and started, then the
//! master's; ansible/roles/loadbalancer/handlers/main.yml, openstack/kolla-ansible 16da807).
//!
//! The change is made to the site, not to the plans: `haseed lab` plans the site again with
//! one setting changed ([`Change::edit`]), through the same plugins, so the files it touches
//! (haproxy.cfg; keepalived.conf and, for the advert interval, keepalived's drop-in) are the
//! ones a user's change would touch. Each trial makes the change and then takes it back (not
//! measured, through the same apply path), so every trial starts from the site's own build.

use super::*;
use crate::day2::{self, FileChange, NodeOp, NodeState, KEEPALIVED_UNIT};
use crate::inventory::Inventory;
use crate::render::{HAPROXY_CFG, KEEPALIVED_CONF};

/// The drop-ins the lab runs the hooks of (`setup::vet`).
const HAPROXY_DROPINS: &str = "/etc/systemd/system/haproxy.service.d/";
const KEEPALIVED_DROPINS: &str = "/etc/systemd/system/keepalived.service.d/";

/// A changed build of the site, planned and rendered (`cli::lab_cmd`).
pub struct Changed {
    pub change: Change,
    pub plans: Vec<NodePlan>,
    pub nodes: Vec<(String, NodeArtifacts)>,
}

/// The changes the scenarios `args` asks for need, each once.
pub fn changes_of(args: &LabArgs) -> Vec<Change> {
    let mut out: Vec<Change> = Vec::new();
    for &name in SCENARIOS {
        if !wanted(args, name) {
            continue;
        }
        if let Some((change, _)) = of_scenario(name) {
            if !out.contains(&change) {
                out.push(change);
            }
        }
    }
    out
}

/// What a config-change scenario changes in the site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Every service's health check `rise` one above the highest the plans have.
    Rise,
    /// The default policy's `priority` 10 lower (10 higher when that is under 1).
    Priority,
    /// The default policy's `advert_int_ms` doubled.
    Advert,
    /// The site given with `--change NEW_SITE`: the user's own change.
    Site,
}

/// How the change reaches the holders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Rollout {
    /// As `haseed apply`: [`day2::node_ops`], backups first, the holder last.
    Apply,
    /// `systemctl restart haproxy` on every holder at once.
    RestartBoth,
    /// kolla-ansible's handlers: each backup's haproxy stopped and started, then the holder's.
    Kolla,
}

/// Whether `args` asks for scenario `name`: those named with `--scenario`, else every one,
/// except `change-site`, which runs (alone, unless others are named) when `--change` gives
/// the changed site.
pub fn wanted(args: &LabArgs, name: &str) -> bool {
    if name == "change-site" && args.change.is_none() {
        return false;
    }
    if args.scenario.is_empty() {
        return args.change.is_none() || name == "change-site";
    }
    args.scenario.iter().any(|s| s == name)
}

impl Change {
    /// The site with this change made, as a user would write it in the site file
    /// (`Change::Site` is the user's file itself: `cli::lab_cmd` plans it).
    pub fn edit(self, inv: &Inventory, plans: &[NodePlan]) -> anyhow::Result<Inventory> {
        let mut inv = inv.clone();
        let instances = || {
            plans
                .iter()
                .filter_map(|p| p.keepalived.as_ref())
                .flat_map(|k| k.instances.iter())
        };
        match self {
            Change::Rise => {
                let rise = plans
                    .iter()
                    .filter_map(|p| p.haproxy.as_ref())
                    .flat_map(|h| h.backends.iter())
                    .flat_map(|b| b.servers.iter())
                    .filter_map(|s| s.check.as_ref())
                    .map(|c| c.rise)
                    .max()
                    .ok_or_else(|| anyhow!("no planned server has a health check to change"))?;
                for s in &mut inv.site.services {
                    s.check.rise = Some(rise + 1);
                }
            }
            Change::Site => bail!("the changed site is the file given with --change"),
            Change::Priority | Change::Advert => {
                let mut settings: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(&inv.default_policy_settings)
                        .context("[default_policy]")?;
                let (key, value) = if self == Change::Priority {
                    let p = instances()
                        .map(|i| u32::from(i.priority))
                        .max()
                        .ok_or_else(|| anyhow!("no planned VRRP instance"))?;
                    ("priority", if p > 10 { p - 10 } else { p + 10 })
                } else {
                    let a = instances()
                        .map(|i| i.advert_int_ms)
                        .max()
                        .ok_or_else(|| anyhow!("no planned VRRP instance"))?;
                    ("advert_int_ms", a * 2)
                };
                settings.insert(key.into(), value.into());
                inv.default_policy_settings = serde_json::Value::Object(settings).to_string();
            }
        }
        Ok(inv)
    }

    pub(super) fn what(self) -> &'static str {
        match self {
            Change::Rise => "every service's check rise +1 (haproxy.cfg)",
            Change::Priority => "[default_policy] priority -10 (keepalived.conf)",
            Change::Advert => {
                "[default_policy] advert_int_ms doubled (keepalived.conf and its drop-in)"
            }
            Change::Site => "the site given with --change",
        }
    }
}

/// The state `haseed apply` records for a holder with this setup (its plan and build).
fn state_of(site: &Site, setup: &Setup) -> anyhow::Result<NodeState> {
    let node = site
        .nodes
        .get(setup.node as usize)
        .ok_or_else(|| anyhow!("node {} is not in the site", setup.node))?;
    Ok(NodeState::of(node, &setup.plan, &setup.artifacts))
}

/// The lab's copies of the files a change touches: (the staged copy, the file the daemon
/// reads).
struct Staged {
    files: Vec<(PathBuf, PathBuf)>,
}

impl Staged {
    /// Every staged file into place (rename: atomic, as apply's swap).
    fn swap(&self) -> anyhow::Result<()> {
        for (staged, target) in &self.files {
            fs::rename(staged, target)
                .with_context(|| format!("moving {} into place", staged.display()))?;
        }
        Ok(())
    }

    fn discard(&self) {
        for (staged, _) in &self.files {
            let _ = fs::remove_file(staged);
        }
    }
}

impl Lab {
    /// Writes holder `h`'s files of `to` that `paths` names next to the ones in use:
    /// haproxy.cfg as built (moved into the lab), keepalived.conf rendered again with the
    /// lab's checks. A drop-in of haproxy or keepalived has no file in the lab: its hooks
    /// (recognised by `setup::vet`) take effect at daemon-reload.
    fn stage(
        &self,
        site: &Site,
        topo: &Topology,
        h: usize,
        to: &Setup,
        paths: &[&str],
    ) -> anyhow::Result<Staged> {
        let home = self.dir.path().join(&topo.holders[h].name);
        let mut files = Vec::new();
        for &path in paths {
            let (name, text) = match path {
                HAPROXY_CFG => ("haproxy.cfg", lab_haproxy_cfg(&to.haproxy_cfg, &home)),
                KEEPALIVED_CONF => {
                    let anchor = self.anchors[h].id();
                    ("keepalived.conf", to.keepalived_conf(site, &home, anchor)?)
                }
                p if p.starts_with(HAPROXY_DROPINS) || p.starts_with(KEEPALIVED_DROPINS) => {
                    continue
                }
                other => bail!(
                    "node {}: the change touches {other}; the lab changes haproxy.cfg,                      keepalived.conf and their drop-ins only (test other files under real                      systemd: tests/firstboot.rs)",
                    topo.holders[h].name
                ),
            };
            let staged = home.join(format!("{name}.haseed-new"));
            fs::write(&staged, text)?;
            files.push((staged, home.join(name)));
        }
        Ok(Staged { files })
    }

    /// Moves holder `h` to the build `to` by the ops [`day2::node_ops`] derives from the two
    /// builds, as `haseed apply` moves a node; `holder`: it has the VIP (a keepalived change
    /// hands the VIP over first). Returns the ops done, by name, and whether the change
    /// touched keepalived's VRRP configuration.
    pub(super) fn apply_to(
        &mut self,
        site: &Site,
        topo: &Topology,
        h: usize,
        to: &Setup,
        holder: bool,
    ) -> anyhow::Result<(Vec<String>, bool)> {
        let name = topo.holders[h].name.clone();
        let before = state_of(site, &self.setups[h])?;
        let after = state_of(site, to)?;
        let actions = day2::node_actions(&before, &after);
        if !actions.refused.is_empty() {
            bail!("node {name}: {}", actions.refused.join("; "));
        }
        if actions.is_empty() {
            bail!("node {name}: the change changes nothing on this holder");
        }
        let paths: Vec<&str> = actions
            .files
            .iter()
            .filter(|(_, c)| *c != FileChange::Removed)
            .map(|(p, _)| p.as_str())
            .collect();
        if actions.files.len() != paths.len() {
            bail!("node {name}: the change removes a file; the lab changes files in place only");
        }
        let hand_over = if holder && actions.touches_vrrp {
            vec![topo.vip_name.clone()]
        } else {
            Vec::new()
        };
        let ns = topo.holders[h].ns.clone();
        let mut staged: Option<Staged> = None;
        let mut done = Vec::new();
        for op in day2::node_ops(&actions, &hand_over) {
            let what = match &op {
                NodeOp::Stage => {
                    staged = Some(self.stage(site, topo, h, to, &paths)?);
                    "stage".to_string()
                }
                NodeOp::Validate { path, command } => {
                    let files = &staged.as_ref().expect("staged before validated").files;
                    let home = self.dir.path().join(&name);
                    let file = Path::new(path).file_name().map(|f| home.join(f));
                    let at = files
                        .iter()
                        .find(|(_, target)| Some(target) == file.as_ref())
                        .map(|(s, _)| s)
                        .ok_or_else(|| anyhow!("node {name}: {path} was not staged"))?;
                    let at = path_str(at)?;
                    let argv: Vec<&str> = command
                        .iter()
                        .map(|w| if w == "{}" { at } else { w.as_str() })
                        .collect();
                    if let Err(e) = self.check_file(&ns, &argv, &format!("node {name}: validate")) {
                        if let Some(s) = &staged {
                            s.discard();
                        }
                        return Err(e);
                    }
                    format!("validate {path}")
                }
                NodeOp::HandOver { vips } => {
                    self.stop_keepalived(h);
                    // keepalived's stop sent a priority-0 advert: a peer has the VIP.
                    for _ in 0..500 {
                        interrupted()?;
                        let held = self.holding(topo);
                        if !held[h].0 && !held[h].1 {
                            break;
                        }
                        thread::sleep(Duration::from_millis(20));
                    }
                    format!("hand over {}", vips.join(", "))
                }
                NodeOp::Swap => {
                    if let Some(s) = &staged {
                        s.swap()?;
                    }
                    // The files, and what the lab renders from them; the units' hooks
                    // change at daemon-reload.
                    let setup = &mut self.setups[h];
                    setup.plan = to.plan.clone();
                    setup.artifacts = to.artifacts.clone();
                    setup.haproxy_cfg = to.haproxy_cfg.clone();
                    setup.checks = to.checks.clone();
                    "swap".to_string()
                }
                NodeOp::DaemonReload => {
                    let setup = &mut self.setups[h];
                    setup.haproxy = to.haproxy.clone();
                    setup.keepalived = to.keepalived.clone();
                    // A running daemon's next stop runs the unit's new ExecStopPost.
                    for (k, hooks) in [&to.haproxy, &to.keepalived].into_iter().enumerate() {
                        *self.stop_post[h][k].lock().expect("no panic holds it") =
                            hooks.stop_post.clone();
                    }
                    "daemon-reload".to_string()
                }
                NodeOp::Reload { unit } if unit == "haproxy.service" => {
                    self.reload_haproxy(topo, h)?;
                    format!("reload {unit}")
                }
                NodeOp::Reload { unit } if unit == KEEPALIVED_UNIT => {
                    self.reload_keepalived(topo, h)?;
                    format!("reload {unit}")
                }
                NodeOp::Restart { unit } if unit == "haproxy.service" => {
                    self.restart_haproxy(topo, h)?;
                    format!("restart {unit}")
                }
                NodeOp::Restart { unit } if unit == KEEPALIVED_UNIT => {
                    self.stop_keepalived(h);
                    self.start_keepalived(topo, h)?;
                    format!("restart {unit}")
                }
                NodeOp::Start { unit } if unit == KEEPALIVED_UNIT => {
                    self.start_keepalived(topo, h)?;
                    format!("start {unit}")
                }
                NodeOp::Healthy { units } => {
                    self.healthy(topo, h, units)?;
                    "health".to_string()
                }
                other => bail!("node {name}: the lab does not carry out {other:?}"),
            };
            done.push(what);
        }
        Ok((done, actions.touches_vrrp))
    }

    /// apply's health step: every unit named runs within 30 s; haproxy with a worker.
    fn healthy(&self, topo: &Topology, h: usize, units: &[String]) -> anyhow::Result<()> {
        let name = &topo.holders[h].name;
        for _ in 0..1500 {
            interrupted()?;
            let up = units.iter().all(|u| match u.as_str() {
                "haproxy.service" => self.haproxy_tree(h).len() >= 2,
                KEEPALIVED_UNIT => self.keepalived[h]
                    .as_ref()
                    .is_some_and(|d| pid_alive(d.pid)),
                _ => false,
            });
            if up {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "node {name}: {} not all running 30 s after the change",
            units.join(", ")
        )
    }

    /// Every holder moved to its build in `to` the way `rollout` says, the VIP's holder
    /// `active` last. Returns a line per node of what was done, and whether keepalived's VRRP
    /// configuration changed on any.
    fn roll(
        &mut self,
        site: &Site,
        topo: &Topology,
        to: &[Setup],
        active: usize,
        rollout: Rollout,
    ) -> anyhow::Result<(Vec<String>, bool)> {
        // day2::roll_order's order for one VIP: the backups, then the holder.
        let order: Vec<usize> = (0..topo.holders.len())
            .filter(|&h| h != active)
            .chain([active])
            .collect();
        let mut said = Vec::new();
        let mut vrrp = false;
        match rollout {
            Rollout::Apply => {
                for &h in &order {
                    let (ops, touched) = self.apply_to(site, topo, h, &to[h], h == active)?;
                    vrrp |= touched;
                    said.push(format!("{}: {}", topo.holders[h].name, ops.join(", ")));
                }
            }
            Rollout::RestartBoth | Rollout::Kolla => {
                for &h in &order {
                    self.stage(site, topo, h, &to[h], &[HAPROXY_CFG])?.swap()?;
                    self.setups[h] = to[h].clone();
                }
                if rollout == Rollout::RestartBoth {
                    for &h in &order {
                        if let Some(d) = &self.haproxy[h] {
                            // SAFETY: kill(2) on a haproxy master this lab started.
                            unsafe { libc::kill(d.pid, libc::SIGTERM) };
                        }
                    }
                    for &h in &order {
                        self.stop_haproxy(h);
                    }
                    for &h in &order {
                        self.start_haproxy(topo, h)?;
                    }
                    said.push("every holder: restart haproxy.service at once".into());
                } else {
                    for &h in &order {
                        self.restart_haproxy(topo, h)?;
                        said.push(format!("{}: restart haproxy.service", topo.holders[h].name));
                    }
                }
            }
        }
        Ok((said, vrrp))
    }

    /// One config-change trial: `change` rolled onto every holder by `rollout` while the
    /// client probes, then taken back (not measured).
    pub(super) fn config_change(
        &mut self,
        site: &Site,
        topo: &Topology,
        trial: u32,
        (change, rollout): (Change, Rollout),
        vrrp: &[HolderVrrp],
        max_ms: u64,
    ) -> anyhow::Result<TrialResult> {
        let scenario = scenario_name(change, rollout);
        let active = self.active(topo)?;
        let forward = self
            .changed
            .iter()
            .find(|(c, _)| *c == change)
            .map(|(_, setups)| setups.clone())
            .ok_or_else(|| anyhow!("the {change:?} change was not built"))?;
        let back = self.base.clone();
        // Long enough for a restarted haproxy's checks to pass again.
        let after = Duration::from_millis(vrrp.iter().map(|v| v.rise_ms).max().unwrap_or(0) + 1500);
        let (mut said, mut vrrp_changed) = (Vec::new(), false);
        let m = self.measure_during(topo, Duration::from_millis(300), after, &mut |lab| {
            (said, vrrp_changed) = lab.roll(site, topo, &forward, active, rollout)?;
            Ok(())
        })?;
        let mark = match rollout {
            Rollout::Apply => "haseed apply's plan",
            Rollout::RestartBoth => "restart haproxy on every holder at once",
            Rollout::Kolla => "kolla-ansible's restarts, backups first",
        };
        let mut r = self.trial(
            topo,
            scenario,
            trial,
            &m,
            format!("{}: {mark}", change.what()),
        );
        r.note = Some(format!("{}; {}", change.what(), said.join("; ")));
        r.why = judge(rollout, vrrp_changed, &r, max_ms);
        r.reference = rollout != Rollout::Apply;
        r.passed = r.why.is_none();
        // Back to the site's own build, through apply's path (the holder may have changed).
        self.settle(topo)?;
        let now = self.active(topo)?;
        self.roll(site, topo, &back, now, Rollout::Apply)
            .context("taking the change back")?;
        Ok(r)
    }

    /// As `measure`, but the VIP is sampled by a thread of its own, so an action that takes
    /// seconds (a roll across nodes) is watched throughout.
    pub(super) fn measure_during(
        &mut self,
        topo: &Topology,
        before: Duration,
        after: Duration,
        action: &mut dyn FnMut(&mut Lab) -> anyhow::Result<()>,
    ) -> anyhow::Result<Measured> {
        let stop = Arc::new(AtomicBool::new(false));
        let probers = self.probers(topo, &stop);
        let sampler = {
            let (stop, holders, vip, epoch) =
                (stop.clone(), topo.holders.clone(), topo.vip, self.epoch);
            thread::spawn(move || {
                let mut out: Vec<Sample> = Vec::new();
                // Bounded as the probers: at most 10 minutes.
                for _ in 0..30_000 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let t = ms(epoch.elapsed());
                    out.push((t, holding(&holders, vip)));
                    thread::sleep(PROBE_EVERY);
                }
                out
            })
        };
        let mut action_ms = 0.0;
        let acted = Self::pause(before).and_then(|()| {
            action_ms = ms(self.epoch.elapsed());
            action(self)
        });
        let watched = acted.and_then(|()| Self::pause(after));
        let probes = stop_probers(&stop, probers);
        let samples = sampler
            .join()
            .map_err(|_| anyhow!("the VIP sampler panicked"))?;
        watched?;
        Ok(Measured {
            probes: probes?,
            samples,
            action_ms,
        })
    }
}

/// Why a config-change trial failed, if it did. A change rolled as apply rolls it: one that
/// leaves keepalived's VRRP configuration alone loses no probe and moves no VIP; one that
/// changes it (handed over on the holder) keeps within the objective and never has the VIP
/// held twice. The other rollouts are reference figures.
fn judge(rollout: Rollout, vrrp_changed: bool, r: &TrialResult, max_ms: u64) -> Option<String> {
    if rollout != Rollout::Apply {
        return None;
    }
    if !vrrp_changed && r.failed_probes > 0 {
        Some(format!(
            "{} failed probes ({:.1} ms) while the change was rolled out",
            r.failed_probes, r.outage_ms
        ))
    } else if !vrrp_changed && r.vip_moves > 0 {
        Some(format!("the VIP moved {} times", r.vip_moves))
    } else if r.outage_ms > max_ms as f64 {
        Some(format!("outage {:.1} ms > {max_ms} ms", r.outage_ms))
    } else if r.duplicate_vip_ms > 0.0 {
        Some(format!("VIP held twice for {:.1} ms", r.duplicate_vip_ms))
    } else {
        None
    }
}

/// The scenario's name for a change and a rollout.
pub(super) fn scenario_name(change: Change, rollout: Rollout) -> &'static str {
    match (rollout, change) {
        (Rollout::Apply, Change::Rise) => "change-haproxy",
        (Rollout::Apply, Change::Priority) => "change-priority",
        (Rollout::Apply, Change::Advert) => "change-advert",
        (Rollout::Apply, Change::Site) => "change-site",
        (Rollout::RestartBoth, _) => "restart-both",
        (Rollout::Kolla, _) => "kolla-restart",
    }
}

/// The change and rollout of a config-change scenario, by name.
pub(super) fn of_scenario(name: &str) -> Option<(Change, Rollout)> {
    Some(match name {
        "change-haproxy" => (Change::Rise, Rollout::Apply),
        "change-priority" => (Change::Priority, Rollout::Apply),
        "change-advert" => (Change::Advert, Rollout::Apply),
        "change-site" => (Change::Site, Rollout::Apply),
        "restart-both" => (Change::Rise, Rollout::RestartBoth),
        "kolla-restart" => (Change::Rise, Rollout::Kolla),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example site planned by the default policy, as `cli::lab_cmd` plans it.
    fn planned(inv: &Inventory) -> (Vec<NodePlan>, NodeState) {
        let host = crate::policy::Host::new(None, crate::policy::Limits::default()).unwrap();
        let chain = crate::pipeline::load_chain(&host, inv).unwrap();
        let (plans, _) = crate::pipeline::plan(&host, inv, &chain).unwrap();
        let nodes = crate::pipeline::render(inv, &plans).unwrap();
        let state = NodeState::of(&inv.site.nodes[0], &plans[0], &nodes[0].1);
        (plans, state)
    }

    #[test]
    fn each_change_is_made_in_the_site_and_touches_what_a_user_change_would() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/examples/pi-k8s/site.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let inv = crate::inventory::parse(&path, &text).unwrap();
        let (plans, base) = planned(&inv);
        let dropin = "/etc/systemd/system/keepalived.service.d/50-haseed-failover.conf";
        for (change, files, unit) in [
            (Change::Rise, vec![HAPROXY_CFG], "haproxy.service"),
            (Change::Priority, vec![KEEPALIVED_CONF], KEEPALIVED_UNIT),
            // The advert interval is also in keepalived's drop-in (its stop waits three
            // adverts before the VIP leaves lo): a restart, not a reload, on a backup.
            (
                Change::Advert,
                vec![KEEPALIVED_CONF, dropin],
                KEEPALIVED_UNIT,
            ),
        ] {
            let (_, after) = planned(&change.edit(&inv, &plans).unwrap());
            let actions = day2::node_actions(&base, &after);
            let touched: Vec<&str> = actions.files.iter().map(|(p, _)| p.as_str()).collect();
            assert_eq!(touched, files, "{change:?}");
            assert!(actions.files.iter().all(|(_, c)| *c == FileChange::Changed));
            // What the lab carries out, as apply does: a holder hands over first when
            // keepalived's file changes, and starts keepalived again.
            let backup = day2::node_ops(&actions, &[]);
            let holder = day2::node_ops(&actions, &["k8s-api".to_string()]);
            let handed = holder.iter().any(|o| matches!(o, NodeOp::HandOver { .. }));
            assert_eq!(handed, unit == KEEPALIVED_UNIT, "{change:?}: {holder:?}");
            let acts_on_unit = |ops: &[NodeOp]| {
                ops.iter()
                    .filter(|o| match o {
                        NodeOp::Reload { unit: u }
                        | NodeOp::Restart { unit: u }
                        | NodeOp::Start { unit: u } => u == unit,
                        _ => false,
                    })
                    .count()
            };
            assert_eq!(acts_on_unit(&backup), 1, "{change:?}: {backup:?}");
            assert_eq!(acts_on_unit(&holder), 1, "{change:?}: {holder:?}");
            assert!(!backup.iter().any(|o| matches!(o, NodeOp::Start { .. })));
        }
        for name in [
            "change-haproxy",
            "change-priority",
            "change-advert",
            "change-site",
            "restart-both",
            "kolla-restart",
        ] {
            let (c, r) = of_scenario(name).unwrap();
            assert_eq!(scenario_name(c, r), name);
        }
        assert!(of_scenario("steady").is_none());
    }

    #[test]
    fn a_change_fails_on_a_lost_probe_a_move_a_long_outage_or_a_doubled_vip() {
        let ok = |f: &dyn Fn(&mut TrialResult)| {
            let mut r = figures("change-haproxy", 1, &[], &[]);
            f(&mut r);
            r
        };
        let judged = |vrrp, r: &TrialResult| judge(Rollout::Apply, vrrp, r, 100);
        assert_eq!(judged(false, &ok(&|_| {})), None);
        let lost = ok(&|r| {
            r.failed_probes = 1;
            r.outage_ms = 20.0;
        });
        assert!(judged(false, &lost).is_some_and(|w| w.contains("1 failed probes")));
        // A keepalived change moves the VIP (the hand-over): within the objective, fine.
        let moved = ok(&|r| {
            r.failed_probes = 2;
            r.outage_ms = 40.0;
            r.vip_moves = 1;
        });
        assert!(judged(false, &moved).is_some());
        assert_eq!(judged(true, &moved), None);
        let quiet_move = ok(&|r| r.vip_moves = 1);
        assert!(judged(false, &quiet_move).is_some_and(|w| w.contains("moved 1 times")));
        let long = ok(&|r| r.outage_ms = 140.0);
        assert!(judged(true, &long).is_some_and(|w| w.contains("> 100 ms")));
        let twice = ok(&|r| r.duplicate_vip_ms = 20.0);
        assert!(judged(true, &twice).is_some_and(|w| w.contains("held twice")));
        // The other tools' ways are measured, not judged.
        assert_eq!(judge(Rollout::RestartBoth, false, &lost, 100), None);
        assert_eq!(judge(Rollout::Kolla, false, &long, 100), None);
    }
}
