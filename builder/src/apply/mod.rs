//! `haseed diff` and `haseed apply` (issue 20): what live nodes hold against a build, and the
//! roll that brings them to it.
//!
//! Both read each node over SSH ([`remote`]): the record of the last apply
//! (`/var/lib/haseed/applied.json`), the sha256, mode and owner of every file haseed manages
//! there, the packages and services of the build. [`crate::day2`] turns that and the build into
//! the steps; `apply` runs them on the node with node.sh (staged files validated by the node's
//! own tools, one swap, the least disruptive reload, a health check, roll-back on any failure),
//! in [`crate::day2::roll_order`]: each VIP's backups first, its active holder last, handing
//! the VIP over first when its keepalived configuration changes.

pub mod remote;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::cli::{Global, JSON_HELP};
use crate::day2::{self, FileChange, FileMeta, NodeActions, NodeOp, NodeState, Step};
use crate::render::NodeArtifacts;
use remote::{quote, RemoteError, Ssh, Target};

/// How to reach the nodes (shared by diff and apply).
#[derive(Args, Debug, Clone)]
pub struct SshArgs {
    /// The private key to log in with (`ssh -i`) [default: ssh-agent and your ssh config].
    #[arg(long, short = 'i', value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// The known_hosts file the nodes' host keys are checked against [default: ssh's,
    /// ~/.ssh/known_hosts]. A node whose key is unknown or changed is refused, never accepted.
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// Seconds to wait for each node to answer SSH.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub connect_timeout: u32,
}

impl SshArgs {
    fn ssh(&self) -> Ssh {
        Ssh {
            identity: self.identity.clone(),
            known_hosts: self.known_hosts.clone(),
            connect_timeout: self.connect_timeout,
        }
    }
}

/// The site and the nodes a day-2 command works on.
#[derive(Args, Debug)]
pub struct Nodes {
    /// The site inventory (TOML).
    pub site: PathBuf,
    /// Apply this stage's `[stage.NAME]` overlays to the inventory.
    #[arg(long, value_name = "NAME")]
    pub stage: Option<String>,
    /// Only this node (repeatable) [default: every node].
    #[arg(long = "node", value_name = "NAME")]
    pub nodes: Vec<String>,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
haseed diff site.toml -i ~/.ssh/id_ed25519            every node against this build\n  \
haseed diff site.toml --node lb1 --json               one node, for machines\n\n\
A node never applied to (flashed before `haseed apply` existed) is compared file by file; its \
record appears with the first apply.")]
pub struct DiffArgs {
    #[command(flatten)]
    pub which: Nodes,
    #[command(flatten)]
    pub ssh: SshArgs,
    #[arg(long, help = JSON_HELP)]
    pub json: bool,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
haseed apply site.toml --dry-run                      the roll: groups, order, steps and why\n  \
haseed apply site.toml --node lb2 --node lb1 --yes    two nodes, no question\n  \
haseed apply site.toml --yes --json > report.json     per node: steps, timings, result\n\n\
Health after the change: every reloaded, restarted or enabled unit active within 30 s, and for \
haproxy a new worker (a master-worker reload that fails keeps the old workers while systemctl \
reports success). On the node: /var/lib/haseed/applied.json (the record), apply.lock, txn/ (the \
journal while a swap is under way).")]
pub struct ApplyArgs {
    #[command(flatten)]
    pub which: Nodes,
    /// Read the nodes and print what would be done, and why; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask before changing nodes (needed when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// How many independent groups (nodes of different VIPs or roles) change at once. Within
    /// a group it is always one node at a time.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub max_parallel: usize,
    #[command(flatten)]
    pub ssh: SshArgs,
    #[arg(long, help = JSON_HELP)]
    pub json: bool,
}

/// The record kept on the node after each apply.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Applied {
    /// haseed's version that applied it.
    pub haseed: String,
    pub site: String,
    /// [`NodeState::digest`] of the build applied.
    pub build: String,
    /// UTC, `YYYY-MM-DDTHH:MM:SSZ`.
    pub applied_at: String,
    pub state: NodeState,
}

const APPLIED: &str = "/var/lib/haseed/applied.json";

/// What a node was found holding.
#[derive(Debug, Default)]
struct Live {
    recorded: Option<Applied>,
    /// Paths of an apply cut off mid-swap (its journal): the next apply rolls them back first.
    interrupted: Option<Vec<String>>,
    files: BTreeMap<String, Option<FileMeta>>,
    contents: BTreeMap<String, String>,
    packages: BTreeMap<String, bool>,
    /// unit -> (is-active, is-enabled)
    services: BTreeMap<String, (String, String)>,
    vips: BTreeMap<String, bool>,
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text.as_bytes())
}

fn unb64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The calls that read one node: its record, the given files (with the build's sha256, so
/// that only differing contents come back), packages, services and VIPs.
fn state_body(
    files: &BTreeMap<String, String>,
    packages: &BTreeSet<String>,
    services: &BTreeSet<String>,
    vips: &[String],
) -> String {
    let mut b = String::from("read_applied\n");
    for (path, sha) in files {
        b += &format!("file_state {} {}\n", quote(path), quote(sha));
    }
    let words = |set: &mut dyn Iterator<Item = &String>| {
        set.map(|w| quote(w)).collect::<Vec<_>>().join(" ")
    };
    if !packages.is_empty() {
        b += &format!("pkg_state {}\n", words(&mut packages.iter()));
    }
    if !services.is_empty() {
        b += &format!("svc_state {}\n", words(&mut services.iter()));
    }
    if !vips.is_empty() {
        b += &format!("vip_state {}\n", words(&mut vips.iter()));
    }
    b
}

fn parse_state(reply: &remote::Reply, live: &mut Live) -> Result<(), String> {
    for l in &reply.lines {
        let f = |i: usize| l.get(i).map(String::as_str).unwrap_or("");
        match f(0) {
            "applied" if f(1) != "-" => {
                let text = unb64(f(1));
                live.recorded = Some(serde_json::from_str(&text).map_err(|e| {
                    format!("{APPLIED} on the node is not haseed's record ({e}); move it away and apply again")
                })?);
            }
            "interrupted" => {
                live.interrupted = Some(unb64(f(1)).lines().map(str::to_string).collect());
            }
            "file" => {
                let path = unb64(f(1));
                let meta = (f(2) != "-").then(|| FileMeta {
                    sha256: f(2).to_string(),
                    mode: u32::from_str_radix(f(3), 8).unwrap_or(0),
                    owner: f(4).to_string(),
                });
                live.files.insert(path, meta);
            }
            "content" => {
                live.contents.insert(unb64(f(1)), unb64(f(2)));
            }
            "pkg" => {
                live.packages.insert(f(1).to_string(), f(2) == "installed");
            }
            "svc" => {
                live.services
                    .insert(f(1).to_string(), (f(2).to_string(), f(3).to_string()));
            }
            "vip" => {
                live.vips.insert(f(1).to_string(), f(2) == "held");
            }
            _ => {}
        }
    }
    Ok(())
}

/// Reads one node: one round trip, a second one for what the record names and this build
/// does not (files, packages and services haseed managed there before).
fn read_live(
    ssh: &Ssh,
    t: &Target,
    after: &NodeState,
    vips: &[String],
) -> Result<Live, RemoteError> {
    let err = |message: String| RemoteError {
        node: t.node.clone(),
        address: t.address.clone(),
        message,
    };
    let limit = Duration::from_secs(120);
    let files: BTreeMap<String, String> = after
        .files
        .iter()
        .map(|(p, m)| (p.clone(), m.sha256.clone()))
        .collect();
    let reply = ssh.run(
        t,
        &state_body(&files, &after.packages, &after.services, vips),
        limit,
    )?;
    let mut live = Live::default();
    parse_state(&reply, &mut live).map_err(err)?;
    if let Some(rec) = &live.recorded {
        let files: BTreeMap<String, String> = rec
            .state
            .files
            .keys()
            .filter(|p| !after.files.contains_key(*p))
            .map(|p| (p.clone(), String::new()))
            .collect();
        let packages: BTreeSet<String> = rec
            .state
            .packages
            .difference(&after.packages)
            .cloned()
            .collect();
        let services: BTreeSet<String> = rec
            .state
            .services
            .difference(&after.services)
            .cloned()
            .collect();
        if !(files.is_empty() && packages.is_empty() && services.is_empty()) {
            let reply = ssh.run(t, &state_body(&files, &packages, &services, &[]), limit)?;
            let mut more = Live::default();
            parse_state(&reply, &mut more).map_err(err)?;
            live.files.extend(more.files);
            live.packages.extend(more.packages);
            live.services.extend(more.services);
        }
    }
    Ok(live)
}

/// What the node holds, as a [`NodeState`] to compare with the build. Without a record (a
/// node flashed by an older haseed, never applied to) its name, address, platform and
/// network are taken as built: only the files, packages and services are measured.
fn before_state(live: &Live, after: &NodeState) -> NodeState {
    let base = live.recorded.as_ref().map_or(after, |r| &r.state);
    NodeState {
        node: base.node.clone(),
        address: base.address.clone(),
        platform: base.platform.clone(),
        network_sha256: base.network_sha256.clone(),
        files: live
            .files
            .iter()
            .filter_map(|(p, m)| m.clone().map(|m| (p.clone(), m)))
            .collect(),
        packages: live
            .packages
            .iter()
            .filter(|(_, installed)| **installed)
            .map(|(p, _)| p.clone())
            .collect(),
        services: live
            .services
            .iter()
            .filter(|(_, (_, enabled))| enabled == "enabled")
            .map(|(u, _)| u.clone())
            .collect(),
    }
}

/// One node's comparison.
#[derive(Debug, Serialize)]
struct NodeDiff {
    node: String,
    address: String,
    in_sync: bool,
    /// The record on the node: its build digest, when and by which haseed.
    applied: Option<AppliedSummary>,
    /// This build's digest for the node.
    build: String,
    files: Vec<FileDiff>,
    packages_missing: Vec<String>,
    /// unit and its state (`systemctl is-active`).
    services_not_active: Vec<(String, String)>,
    refused: Vec<String>,
    interrupted: bool,
    notes: Vec<String>,
    #[serde(skip)]
    actions: NodeActions,
    #[serde(skip)]
    holds: Vec<String>,
}

#[derive(Debug, Serialize)]
struct AppliedSummary {
    build: String,
    applied_at: String,
    haseed: String,
}

#[derive(Debug, Serialize)]
struct FileDiff {
    path: String,
    change: FileChange,
    /// Unified diff, node's copy first; none when only the mode or owner differ.
    diff: Option<String>,
    /// Mode or owner differences.
    detail: Option<String>,
}

fn compare(live: &Live, after: &NodeState, artifacts: &NodeArtifacts) -> NodeDiff {
    let before = before_state(live, after);
    let mut actions = day2::node_actions(&before, after);
    // An enabled service that is not running: apply starts it again.
    let not_active: Vec<(String, String)> = after
        .services
        .iter()
        .filter_map(|u| {
            let (active, _) = live.services.get(u)?;
            (active != "active").then(|| (u.clone(), active.clone()))
        })
        .collect();
    for (u, state) in &not_active {
        let handled = actions
            .steps
            .iter()
            .any(|s| matches!(s, Step::Restart { unit, .. } | Step::Enable { unit } if unit == u));
        if !handled && before.services.contains(u) {
            actions.steps.push(Step::Restart {
                unit: u.clone(),
                why: format!("it is {state} on the node"),
            });
        }
    }
    let content: BTreeMap<&str, &str> = artifacts
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.content.as_str()))
        .collect();
    let files = actions
        .files
        .iter()
        .map(|(path, change)| {
            let mut d = FileDiff {
                path: path.clone(),
                change: *change,
                diff: None,
                detail: None,
            };
            if *change == FileChange::Changed {
                let (old, new) = (&before.files[path], &after.files[path]);
                if old.sha256 != new.sha256 {
                    let theirs = live.contents.get(path).map(String::as_str).unwrap_or("");
                    d.diff = Some(
                        similar::TextDiff::from_lines(
                            theirs,
                            content.get(path.as_str()).unwrap_or(&""),
                        )
                        .unified_diff()
                        .context_radius(3)
                        .header(
                            &format!("{}:{path} (on the node)", after.node),
                            &format!("{path} (this build)"),
                        )
                        .to_string(),
                    );
                }
                let mut detail = Vec::new();
                if old.mode != new.mode {
                    detail.push(format!(
                        "mode {:04o} on the node, {:04o} in this build",
                        old.mode, new.mode
                    ));
                }
                if old.owner != new.owner {
                    detail.push(format!(
                        "owner {} on the node, {} in this build",
                        old.owner, new.owner
                    ));
                }
                if !detail.is_empty() {
                    d.detail = Some(detail.join("; "));
                }
            }
            d
        })
        .collect();
    let packages_missing = actions
        .steps
        .iter()
        .find_map(|s| match s {
            Step::Install { packages } => Some(packages.clone()),
            _ => None,
        })
        .unwrap_or_default();
    let mut notes = actions.notes.clone();
    if live.recorded.is_none() {
        notes.push(format!(
            "no apply recorded on the node ({APPLIED}): files are compared with this build only; \
             ones an earlier build wrote and this one drops are not known"
        ));
    }
    let holds = live
        .vips
        .iter()
        .filter(|(_, held)| **held)
        .map(|(a, _)| a.clone())
        .collect();
    NodeDiff {
        node: after.node.clone(),
        address: after.address.clone(),
        in_sync: actions.is_empty() && not_active.is_empty() && live.interrupted.is_none(),
        applied: live.recorded.as_ref().map(|r| AppliedSummary {
            build: r.build.clone(),
            applied_at: r.applied_at.clone(),
            haseed: r.haseed.clone(),
        }),
        build: after.digest(),
        files,
        packages_missing,
        services_not_active: not_active,
        refused: actions.refused.clone(),
        interrupted: live.interrupted.is_some(),
        notes,
        actions,
        holds,
    }
}

/// The built site, the nodes asked for, and what each holds.
struct Survey {
    site: crate::contract::Site,
    /// Indices into `site.nodes`, parallel to `diffs`.
    chosen: Vec<usize>,
    artifacts: Vec<NodeArtifacts>,
    states: Vec<NodeState>,
    diffs: Vec<Result<NodeDiff, RemoteError>>,
}

fn survey(global: &Global, which: &Nodes, ssh: &Ssh, parallel: usize) -> anyhow::Result<Survey> {
    let (site, names) = (&which.site, &which.nodes);
    // The plan covers the whole site (plugins see all of it); only the chosen nodes render.
    let planned = crate::cli::plan_site(global, site, which.stage.as_deref())?;
    let site_def = planned.inv.site.clone();
    let mut chosen = Vec::new();
    let index: BTreeMap<&str, usize> = site_def
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    let mut seen = BTreeSet::new();
    for name in names {
        let Some(&i) = index.get(name.as_str()) else {
            let all: Vec<&str> = site_def.nodes.iter().map(|n| n.name.as_str()).collect();
            anyhow::bail!(
                "node {name} is not in site {} ({}): its nodes are {}",
                site_def.name,
                site.display(),
                all.join(", ")
            );
        };
        if seen.insert(i) {
            chosen.push(i);
        }
    }
    if names.is_empty() {
        chosen = (0..site_def.nodes.len()).collect();
    }
    let rendered = crate::pipeline::render_some(&planned.inv, &planned.plans, &chosen)?;
    let mut artifacts = Vec::new();
    let mut states = Vec::new();
    for (&i, (_, a)) in chosen.iter().zip(rendered) {
        states.push(NodeState::of(&site_def.nodes[i], &planned.plans[i], &a));
        artifacts.push(a);
    }
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    let progress = !global.quiet && chosen.len() > 1;
    std::thread::scope(|s| {
        for _ in 0..parallel.clamp(1, 16) {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&i) = chosen.get(k) else { break };
                let node = &site_def.nodes[i];
                let vips: Vec<String> = site_def
                    .vips
                    .iter()
                    .filter(|v| v.holders.contains(&(i as u32)))
                    .map(|v| v.address.clone())
                    .collect();
                let t = Target {
                    node: node.name.clone(),
                    user: node.user.clone(),
                    address: node.address.clone(),
                };
                let r = read_live(ssh, &t, &states[k], &vips)
                    .map(|live| compare(&live, &states[k], &artifacts[k]));
                if progress {
                    eprintln!("read {} ({})", node.name, node.address);
                }
                results.lock().expect("no panic holds it").push((k, r));
            });
        }
    });
    let mut results = results.into_inner().expect("threads joined");
    results.sort_by_key(|(k, _)| *k);
    Ok(Survey {
        site: site_def,
        chosen,
        artifacts,
        states,
        diffs: results.into_iter().map(|(_, r)| r).collect(),
    })
}

fn print_diff(d: &NodeDiff) {
    let recorded = match &d.applied {
        Some(a) if a.build == d.build => {
            format!("this build applied {} by haseed {}", a.applied_at, a.haseed)
        }
        Some(a) => format!(
            "last applied: build {} at {} by haseed {}",
            &a.build[..12.min(a.build.len())],
            a.applied_at,
            a.haseed
        ),
        None => "no apply recorded".into(),
    };
    let state = if d.in_sync { "in sync" } else { "drifted" };
    println!("{} ({}): {state} ({recorded})", d.node, d.address);
    if d.interrupted {
        println!("  an apply was cut off mid-swap: the next `haseed apply` puts the old files back first");
    }
    for r in &d.refused {
        println!("  cannot be applied: {r}");
    }
    for f in &d.files {
        let what = match f.change {
            FileChange::Added => "added (not on the node)",
            FileChange::Changed => "changed",
            FileChange::Removed => "removed (haseed wrote it; this build does not)",
        };
        println!("  {what}: {}", f.path);
        if let Some(detail) = &f.detail {
            println!("    {detail}");
        }
        if let Some(diff) = &f.diff {
            for l in diff.lines() {
                println!("    {l}");
            }
        }
    }
    if !d.packages_missing.is_empty() {
        println!("  packages missing: {}", d.packages_missing.join(", "));
    }
    for (u, s) in &d.services_not_active {
        println!("  service not active: {u} ({s})");
    }
    for n in &d.notes {
        println!("  note: {n}");
    }
}

pub fn diff_cmd(global: &Global, args: &DiffArgs) -> anyhow::Result<ExitCode> {
    let s = survey(global, &args.which, &args.ssh.ssh(), 8)?;
    let mut drifted = 0;
    let mut failed = Vec::new();
    let mut out = Vec::new();
    for r in &s.diffs {
        match r {
            Ok(d) => {
                drifted += usize::from(!d.in_sync);
                if !global.out.json() {
                    print_diff(d);
                }
                out.push(serde_json::to_value(d)?);
            }
            Err(e) => {
                out.push(
                    serde_json::json!({"node": e.node, "address": e.address, "error": e.message}),
                );
                failed.push(e.to_string());
            }
        }
    }
    if global.out.json() {
        global.out.field("site", &s.site.name)?;
        global.out.field("nodes", out)?;
    }
    if !failed.is_empty() {
        // Exit 2 (cli::run): the node entries carry their errors too.
        anyhow::bail!(
            "{} of {} node(s) could not be read:\n  {}",
            failed.len(),
            s.diffs.len(),
            failed.join("\n  ")
        );
    }
    if !global.quiet && !global.out.json() {
        eprintln!(
            "{} node(s): {} in sync, {drifted} drifted",
            s.diffs.len(),
            s.diffs.len() - drifted
        );
    }
    Ok(if drifted == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The calls that move one node: see node.sh.
fn apply_body(
    d: &NodeDiff,
    artifacts: &NodeArtifacts,
    record: &str,
    digest: &str,
    hand_over: &[String],
) -> String {
    let mut b = String::from("begin\n");
    let changed: Vec<&crate::render::RenderedFile> = artifacts
        .files
        .iter()
        .filter(|f| {
            d.actions
                .files
                .iter()
                .any(|(p, c)| p == &f.path && *c != FileChange::Removed)
        })
        .collect();
    let removed: Vec<&String> = d
        .actions
        .files
        .iter()
        .filter(|(_, c)| *c == FileChange::Removed)
        .map(|(p, _)| p)
        .collect();
    // Each staged file once next to its target, its old copy once in the journal, the record
    // twice: KiB, rounded up, with 64 KiB to spare.
    let bytes: usize = changed.iter().map(|f| f.content.len()).sum::<usize>() + record.len();
    b += &format!("free_space {}\n", (2 * bytes).div_ceil(1024) + 64);
    let words = |w: &[String]| w.iter().map(|x| quote(x)).collect::<Vec<_>>().join(" ");
    // A unit action: its step name in the report, then node.sh's `act`.
    let act = |verb: &str, unit: &str| {
        format!(
            "step {} act {verb} {}\n",
            quote(&format!("{verb} {unit}")),
            quote(unit)
        )
    };
    for op in day2::node_ops(&d.actions, hand_over) {
        b += &match op {
            NodeOp::Install { packages } => format!(
                "step install env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold {}\n",
                words(&packages)
            ),
            NodeOp::Stage => {
                let mut lines = String::new();
                for f in &changed {
                    lines += &format!(
                        "stage {} {:o} {} <<'HASEED_B64_END' || {{ say step stage failed 0; fail; }}\n{}\nHASEED_B64_END\n",
                        quote(&f.path),
                        f.mode,
                        quote(&f.owner),
                        b64(&f.content)
                    );
                }
                lines + "say step stage ok 0\n"
            }
            NodeOp::Validate { path, command } => {
                format!("validate {} {}\n", quote(&path), words(&command))
            }
            NodeOp::HandOver { vips } => format!("step hand-over hand_over {}\n", words(&vips)),
            NodeOp::Swap => {
                let staged: Vec<String> = changed.iter().map(|f| f.path.clone()).collect();
                let gone: Vec<String> = removed.iter().map(|p| p.to_string()).collect();
                // node.sh's `swap STAGED... -- REMOVED...`.
                format!("step swap swap {} -- {}\n", words(&staged), words(&gone))
            }
            NodeOp::DaemonReload => "step daemon-reload act daemon-reload\n".into(),
            NodeOp::Run { command } => {
                format!("step {} {}\n", quote(&command.join(" ")), words(&command))
            }
            // reload-or-restart: a unit that is not running is started, not left down.
            NodeOp::Reload { unit } => act("reload", &unit),
            NodeOp::Restart { unit } => act("restart", &unit),
            NodeOp::Enable { unit } => act("enable", &unit),
            NodeOp::Disable { unit } => act("disable", &unit),
            NodeOp::Start { unit } => act("start", &unit),
            NodeOp::Healthy { units } => {
                let list: String = units.iter().map(|u| format!(" {}", quote(u))).collect();
                format!("step health healthy{list}\n")
            }
        };
    }
    b += &format!(
        "finish {} <<'HASEED_B64_END'\n{}\nHASEED_B64_END\n",
        quote(digest),
        b64(record)
    );
    b
}

/// One step as the node reported it.
#[derive(Debug, Serialize)]
struct StepDone {
    step: String,
    ok: bool,
    ms: u64,
}

#[derive(Debug, Serialize)]
struct NodeReport {
    node: String,
    address: String,
    /// "applied", "in-sync", "failed", "not-started" (an earlier node failed).
    result: String,
    steps: Vec<StepDone>,
    /// The failing tool's output.
    output: Option<String>,
    rolled_back: bool,
    ms: u64,
    error: Option<String>,
}

fn parse_steps(reply: &remote::Reply) -> (Vec<StepDone>, Option<String>, bool, bool) {
    let mut steps = Vec::new();
    let (mut output, mut rolled_back, mut done) = (None, false, false);
    for l in &reply.lines {
        match l.first().map(String::as_str) {
            Some("step") if l.len() >= 4 => {
                let n = l.len();
                steps.push(StepDone {
                    step: l[1..n - 2].join(" "),
                    ok: l[n - 2] == "ok",
                    ms: l[n - 1].parse().unwrap_or(0),
                });
            }
            Some("out") => output = l.get(1).map(|s| unb64(s)),
            Some("rolled-back") => rolled_back = true,
            Some("done") => done = true,
            _ => {}
        }
    }
    (steps, output, rolled_back, done)
}

fn describe(d: &NodeDiff, hand_over: &[String]) -> Vec<String> {
    let mut lines = Vec::new();
    for f in &d.files {
        lines.push(format!("{:?} {}", f.change, f.path).to_lowercase());
    }
    if !hand_over.is_empty() {
        lines.push(format!(
            "hand over {} first (it holds them and its keepalived configuration changes): stop keepalived, a peer takes them",
            hand_over.join(", ")
        ));
    }
    for s in &d.actions.steps {
        lines.push(match s {
            Step::Install { packages } => format!("install {}", packages.join(" ")),
            Step::Validate { path, command } => {
                format!("validate {path} on the node: {}", command.join(" "))
            }
            Step::Swap => "swap the staged files in at once".into(),
            Step::DaemonReload => "systemctl daemon-reload".into(),
            Step::Run { command, why } => format!("{} ({why})", command.join(" ")),
            Step::Reload { unit, why } => format!("reload {unit} ({why})"),
            Step::Restart { unit, why } => format!("restart {unit} ({why})"),
            Step::Enable { unit } => format!("enable --now {unit} (new in this build)"),
            Step::Disable { unit } => format!("disable --now {unit} (dropped from this build)"),
        });
    }
    if !hand_over.is_empty() {
        lines.push("start keepalived.service with its new configuration".into());
    }
    lines
}

pub fn apply_cmd(global: &Global, args: &ApplyArgs) -> anyhow::Result<ExitCode> {
    let ssh = args.ssh.ssh();
    let mut s = survey(global, &args.which, &ssh, 8)?;
    // A node left mid-swap by an apply that was killed: its old files go back first (node.sh
    // `begin`), then it is read again, so the plan starts from one build, not a mix.
    let cut_off: Vec<Target> = s
        .chosen
        .iter()
        .zip(&s.diffs)
        .filter(|(_, d)| matches!(d, Ok(d) if d.interrupted))
        .map(|(&i, _)| {
            let n = &s.site.nodes[i];
            Target {
                node: n.name.clone(),
                user: n.user.clone(),
                address: n.address.clone(),
            }
        })
        .collect();
    if !cut_off.is_empty() && !args.dry_run {
        for t in &cut_off {
            if !global.quiet {
                eprintln!(
                    "{}: an earlier apply was cut off mid-swap: putting its old files back",
                    t.node
                );
            }
            ssh.run(t, "begin\n", Duration::from_secs(120))?;
        }
        s = survey(global, &args.which, &ssh, 8)?;
    }
    let json = global.out.json();
    let mut unreadable = Vec::new();
    let mut refused = Vec::new();
    for r in &s.diffs {
        match r {
            Err(e) => unreadable.push(e.to_string()),
            Ok(d) => refused.extend(d.refused.iter().map(|r| format!("node {}: {r}", d.node))),
        }
    }
    anyhow::ensure!(
        unreadable.is_empty(),
        "nothing was applied: {} node(s) could not be read:\n  {}",
        unreadable.len(),
        unreadable.join("\n  ")
    );
    anyhow::ensure!(
        refused.is_empty(),
        "nothing was applied: this build changes what a running node cannot take:\n  {}",
        refused.join("\n  ")
    );
    let diffs: Vec<&NodeDiff> = s
        .diffs
        .iter()
        .map(|r| r.as_ref().expect("checked"))
        .collect();
    // Who holds each VIP now (the node reports it), and who is to change.
    let by_site_index: BTreeMap<usize, usize> =
        s.chosen.iter().enumerate().map(|(k, &i)| (i, k)).collect();
    let held_by = vip_holders(&s.chosen, &diffs);
    let holder = |v: usize| held_by.get(s.site.vips[v].address.as_str()).copied();
    let changed: Vec<u32> = s
        .chosen
        .iter()
        .zip(&diffs)
        .filter(|(_, d)| !d.actions.is_empty() || d.interrupted)
        .map(|(&i, _)| i as u32)
        .collect();
    let groups = day2::roll_order(&s.site, &changed, holder);
    let hand_over = |k: usize| -> Vec<String> {
        let d = diffs[k];
        if d.actions.touches_vrrp {
            d.holds.clone()
        } else {
            Vec::new()
        }
    };
    if !json && !global.quiet {
        if changed.is_empty() {
            eprintln!("every node is in sync with this build: nothing to apply");
        }
        for (g, group) in groups.iter().enumerate() {
            let names: Vec<&str> = group
                .iter()
                .map(|&i| s.site.nodes[i as usize].name.as_str())
                .collect();
            println!("group {} (one node at a time): {}", g + 1, names.join(", "));
            for &i in group {
                let k = by_site_index[&(i as usize)];
                println!("  {} ({}):", diffs[k].node, diffs[k].address);
                for l in describe(diffs[k], &hand_over(k)) {
                    println!("    {l}");
                }
                for n in &diffs[k].notes {
                    println!("    note: {n}");
                }
            }
        }
    }
    if args.dry_run || changed.is_empty() {
        if json {
            let plan: Vec<_> = groups
                .iter()
                .map(|g| {
                    g.iter()
                        .map(|&i| {
                            let k = by_site_index[&(i as usize)];
                            serde_json::json!({
                                "node": diffs[k].node,
                                "steps": diffs[k].actions.steps,
                                "files": diffs[k].files,
                                "hand_over": hand_over(k),
                            })
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            global.out.field("site", &s.site.name)?;
            global.out.field("groups", plan)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !args.yes {
        anyhow::ensure!(
            std::io::stdin().is_terminal(),
            "not applied: pass --yes to change {} node(s) without a question (or --dry-run to see the plan)",
            changed.len()
        );
        eprint!("change {} node(s) as above? [y/N] ", changed.len());
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("nothing was applied");
            return Ok(ExitCode::from(1));
        }
    }

    let quiet = global.quiet;
    let stop = AtomicBool::new(false);
    let next = AtomicUsize::new(0);
    let reports = Mutex::new(Vec::new());
    let version = env!("CARGO_PKG_VERSION");
    std::thread::scope(|scope| {
        for _ in 0..args.max_parallel.clamp(1, 64) {
            scope.spawn(|| loop {
                let g = next.fetch_add(1, Ordering::Relaxed);
                let Some(group) = groups.get(g) else { break };
                for &i in group {
                    let k = by_site_index[&(i as usize)];
                    let d = diffs[k];
                    if stop.load(Ordering::Relaxed) {
                        reports.lock().expect("no panic").push((
                            k,
                            NodeReport {
                                node: d.node.clone(),
                                address: d.address.clone(),
                                result: "not-started".into(),
                                steps: vec![],
                                output: None,
                                rolled_back: false,
                                ms: 0,
                                error: Some("an earlier node failed: the roll stopped".into()),
                            },
                        ));
                        continue;
                    }
                    let node = &s.site.nodes[i as usize];
                    let t = Target {
                        node: node.name.clone(),
                        user: node.user.clone(),
                        address: node.address.clone(),
                    };
                    let digest = s.states[k].digest();
                    let record = serde_json::to_string_pretty(&Applied {
                        haseed: version.to_string(),
                        site: s.site.name.clone(),
                        build: digest.clone(),
                        applied_at: crate::kubernetes::utc_now(),
                        state: s.states[k].clone(),
                    })
                    .expect("a record serialises");
                    let body = apply_body(d, &s.artifacts[k], &record, &digest, &hand_over(k));
                    if !json && !quiet {
                        eprintln!("{}: applying", d.node);
                    }
                    let started = Instant::now();
                    let r = ssh.run(&t, &body, Duration::from_secs(900));
                    let ms = started.elapsed().as_millis() as u64;
                    let report = match r {
                        Err(e) => NodeReport {
                            node: d.node.clone(),
                            address: d.address.clone(),
                            result: "failed".into(),
                            steps: vec![],
                            output: None,
                            rolled_back: false,
                            ms,
                            error: Some(e.message),
                        },
                        Ok(reply) => {
                            let (steps, output, rolled_back, done) = parse_steps(&reply);
                            let failed_step = steps.iter().find(|s| !s.ok).map(|s| s.step.clone());
                            NodeReport {
                                node: d.node.clone(),
                                address: d.address.clone(),
                                result: if done { "applied" } else { "failed" }.into(),
                                error: (!done).then(|| match &failed_step {
                                    Some(step) => format!("step {step} failed"),
                                    None => format!(
                                        "the node's script stopped (exit {:?}) without finishing",
                                        reply.status
                                    ),
                                }),
                                steps,
                                output,
                                rolled_back,
                                ms,
                            }
                        }
                    };
                    if report.result != "applied" {
                        stop.store(true, Ordering::Relaxed);
                    }
                    if !json && !quiet {
                        print_report(&report);
                    }
                    reports.lock().expect("no panic").push((k, report));
                }
            });
        }
    });
    let mut reports = reports.into_inner().expect("threads joined");
    reports.sort_by_key(|(k, _)| *k);
    let failed: Vec<&NodeReport> = reports
        .iter()
        .map(|(_, r)| r)
        .filter(|r| r.result == "failed")
        .collect();
    if json {
        global.out.field("site", &s.site.name)?;
        global
            .out
            .field("nodes", reports.iter().map(|(_, r)| r).collect::<Vec<_>>())?;
    }
    if let Some(f) = failed.first() {
        anyhow::bail!(
            "node {} ({}): {}; the roll stopped there{}{}",
            f.node,
            f.address,
            f.error.as_deref().unwrap_or("failed"),
            if f.rolled_back {
                " (its previous files are back and reloaded)"
            } else {
                " (nothing was swapped on it)"
            },
            f.output
                .as_deref()
                .map(|o| format!(". The node said:\n{}", o.trim_end()))
                .unwrap_or_default(),
        );
    }
    if !json && !global.quiet {
        eprintln!("applied to {} node(s)", reports.len());
    }
    Ok(ExitCode::SUCCESS)
}

/// Each VIP address and the node (site index) that said it holds it (the first, should two
/// say so): one pass over the nodes, not one per VIP.
fn vip_holders<'a>(chosen: &[usize], diffs: &[&'a NodeDiff]) -> BTreeMap<&'a str, u32> {
    let mut held_by = BTreeMap::new();
    for (&i, d) in chosen.iter().zip(diffs) {
        for a in &d.holds {
            held_by.entry(a.as_str()).or_insert(i as u32);
        }
    }
    held_by
}

fn print_report(r: &NodeReport) {
    let steps: Vec<String> = r
        .steps
        .iter()
        .map(|s| {
            format!(
                "{} {}{}",
                s.step,
                if s.ok { "ok" } else { "FAILED" },
                if s.ms > 0 {
                    format!(" {} ms", s.ms)
                } else {
                    String::new()
                }
            )
        })
        .collect();
    eprintln!(
        "{}: {} in {} ms: {}",
        r.node,
        r.result,
        r.ms,
        steps.join(", ")
    );
}

#[cfg(test)]
mod tests;
