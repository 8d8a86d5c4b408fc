//! `haseed lab`: proves a site's failover on its own generated configuration
//! before anything is flashed. Network namespaces mirror one VIP's holders and
//! its services' backends on one L2 segment (a bridge in its own namespace),
//! plus a client; the real `haproxy` and `keepalived` run with the generated
//! files (only state paths, sockets and pid files moved into the lab's
//! directory), and the lab runs the generated drop-ins' `ExecStartPre=`,
//! `ExecStartPost=` and `ExecStopPost=` commands around them as systemd would.
//!
//! It must never touch anything it did not create: every namespace, process
//! and file it makes is removed on success, failure and Ctrl-C (the `Lab`
//! guard), traffic stays inside its namespaces, and every loop is bounded.

pub mod arp;
pub mod svg;
pub mod unit;

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde::Serialize;

use crate::contract::{NodePlan, Site, VrrpState};
use crate::render::NodeArtifacts;
use unit::{ExecCommand, Hooks};

/// `haseed lab` arguments.
#[derive(clap::Args, Debug)]
pub struct LabArgs {
    /// The site inventory (TOML).
    pub site: PathBuf,
    /// Apply the inventory's [stage.NAME] overlay.
    #[arg(long, value_name = "NAME")]
    pub stage: Option<String>,
    /// The VIP to test [default: the first VIP that carries a service].
    #[arg(long)]
    pub vip: Option<String>,
    /// Trials of each scenario.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub trials: u32,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The objective: the longest outage a client may see, in ms [default:
    /// the VIP's `max_outage_ms` in the inventory, else 100].
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub max_outage_ms: Option<u64>,
    /// Run only this scenario (repeatable) [default: all of them]:
    /// steady, haproxy-killed, haproxy-hung, old-master-restored,
    /// backend-killed, split-brain, keepalived-stop, keepalived-crash.
    #[arg(long, value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(SCENARIOS))]
    pub scenario: Vec<String>,
    /// Write one SVG timeline per scenario trial (probe results, which holder
    /// had the VIP) into this directory.
    #[arg(long, value_name = "DIR")]
    pub svg: Option<PathBuf>,
}

/// The scenarios, in the order they run.
pub const SCENARIOS: &[&str] = &[
    "steady",
    "haproxy-killed",
    "haproxy-hung",
    "old-master-restored",
    "backend-killed",
    "split-brain",
    "keepalived-stop",
    "keepalived-crash",
];

/// Fails once SIGINT/SIGTERM/SIGHUP came (`crate::interrupt`): every loop of
/// the lab checks it and unwinds, so the guard's cleanup runs.
fn interrupted() -> anyhow::Result<()> {
    if crate::interrupt::received().is_some() {
        bail!("interrupted: the lab cleaned up after itself");
    }
    Ok(())
}

/// Probe period and timeout of the client.
const PROBE_EVERY: Duration = Duration::from_millis(20);
const PROBE_TIMEOUT: Duration = Duration::from_millis(200);
/// How long the client collects answers to its ARP request for the VIP.
const ARP_WAIT: Duration = Duration::from_millis(200);
/// How long the lab waits for the VIP to settle on one holder.
const SETTLE: Duration = Duration::from_secs(20);

/// One scenario trial's figures.
#[derive(Clone, Debug, Serialize)]
pub struct TrialResult {
    pub scenario: &'static str,
    pub trial: u32,
    /// Longest run of failed probes: first failure to the next success.
    pub outage_ms: f64,
    pub probes: usize,
    pub failed_probes: usize,
    /// Slowest successful probe (a SYN lost in a VIP gap costs ~1 s).
    pub max_latency_ms: f64,
    /// Times the VIP went to another holder.
    pub vip_moves: usize,
    /// Time two or more holders had the VIP (sampled every 20 ms).
    pub duplicate_vip_ms: f64,
    /// Who answered the client's ARP request for the VIP after the trial
    /// (holder names; asked in the scenarios where a node that lost or never
    /// had the VIP must stay silent).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub arp_answered_by: Vec<String>,
    pub passed: bool,
    /// Why it failed, when it did.
    pub why: Option<String>,
    /// What the trial expected or saw besides the figures (a bound derived
    /// from the plan, a failback the site's configuration asks for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Probes and VIP samples, for `--svg`.
    #[serde(skip)]
    pub timeline: Option<Timeline>,
}

/// What a trial saw over time, for the SVG timeline. Times are ms since the
/// lab started.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    /// Holder names, one lane each.
    pub holders: Vec<String>,
    pub probes: Vec<Probe>,
    pub samples: Vec<Sample>,
    /// Events: time and what happened (the scenario's action, a link's return).
    pub marks: Vec<(f64, String)>,
}

/// The lab's first check, before the site is even planned.
pub fn require_root() -> anyhow::Result<()> {
    if !crate::validate::is_root() {
        bail!(
            "haseed lab needs root: it creates network namespaces and runs haproxy and keepalived in them \
             (run it with sudo)"
        );
    }
    Ok(())
}

/// Median and max outage of one scenario over its trials.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub scenario: &'static str,
    pub trials: usize,
    pub passed: usize,
    pub median_outage_ms: f64,
    pub max_outage_ms: f64,
    pub max_duplicate_vip_ms: f64,
}

fn summarize(results: &[TrialResult]) -> Vec<Summary> {
    let mut names: Vec<&'static str> = results.iter().map(|r| r.scenario).collect();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let rs: Vec<&TrialResult> = results.iter().filter(|r| r.scenario == name).collect();
            let mut outages: Vec<f64> = rs.iter().map(|r| r.outage_ms).collect();
            outages.sort_by(f64::total_cmp);
            Summary {
                scenario: name,
                trials: rs.len(),
                passed: rs.iter().filter(|r| r.passed).count(),
                median_outage_ms: outages[outages.len() / 2],
                max_outage_ms: outages.last().copied().unwrap_or(0.0),
                max_duplicate_vip_ms: rs.iter().map(|r| r.duplicate_vip_ms).fold(0.0, f64::max),
            }
        })
        .collect()
}

/// The objective when neither `--max-outage-ms` nor the VIP's
/// `max_outage_ms` sets one (the issue's target for the default policy).
pub const DEFAULT_MAX_OUTAGE_MS: u64 = 100;

/// Runs the lab on a rendered site. Needs root. `objectives`: each VIP's
/// `max_outage_ms` from the inventory, parallel to `site.vips`.
pub fn run(
    site: &Site,
    objectives: &[Option<u64>],
    plans: &[NodePlan],
    nodes: &[(String, NodeArtifacts)],
    args: &LabArgs,
) -> anyhow::Result<ExitCode> {
    require_root()?;
    for tool in ["ip", "haproxy", "keepalived"] {
        if find_tool(tool).is_none() {
            bail!("haseed lab needs {tool} on PATH (apt-get install iproute2 haproxy keepalived)");
        }
    }
    crate::interrupt::install();
    let topo = Topology::of(site, args.vip.as_deref())?;
    let max_outage_ms = args
        .max_outage_ms
        .or_else(|| {
            let v = site.vips.iter().position(|v| v.name == topo.vip_name)?;
            objectives.get(v).copied().flatten()
        })
        .unwrap_or(DEFAULT_MAX_OUTAGE_MS);
    let vrrp = topo
        .holders
        .iter()
        .map(|h| {
            h.node
                .and_then(|n| plans.get(n))
                .and_then(|p| HolderVrrp::of(p, topo.vip))
                .ok_or_else(|| {
                    anyhow!(
                        "node {}: its plan has no keepalived instance for VIP {} ({})",
                        h.name,
                        topo.vip_name,
                        topo.vip
                    )
                })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut lab = Lab::new(&topo)?;
    let result = (|| {
        lab.build(&topo, nodes)?;
        lab.settle(&topo)?;
        let mut results = Vec::new();
        for &scenario in SCENARIOS {
            if !args.scenario.is_empty() && !args.scenario.iter().any(|s| s == scenario) {
                continue;
            }
            for trial in 1..=args.trials {
                results.push(match scenario {
                    "steady" => lab.steady(&topo, trial)?,
                    "haproxy-killed" => lab.haproxy_killed(&topo, trial, max_outage_ms)?,
                    "haproxy-hung" => lab.haproxy_hung(&topo, trial, &vrrp)?,
                    "old-master-restored" => {
                        lab.old_master_restored(&topo, trial, &vrrp, max_outage_ms)?
                    }
                    "backend-killed" => lab.backend_killed(&topo, trial, plans)?,
                    "split-brain" => lab.split_brain(&topo, trial)?,
                    "keepalived-stop" => {
                        lab.keepalived_stopped(&topo, trial, max_outage_ms, false)?
                    }
                    _ => lab.keepalived_stopped(&topo, trial, max_outage_ms, true)?,
                });
            }
        }
        Ok::<_, anyhow::Error>(results)
    })();
    drop(lab);
    let results = result?;
    let ok = results.iter().all(|r| r.passed);
    let svgs = match &args.svg {
        Some(dir) => write_svgs(dir, &results)?,
        None => Vec::new(),
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "site": site.name,
                "vip": topo.vip_name,
                "max_outage_ms": max_outage_ms,
                "passed": ok,
                "summary": summarize(&results),
                "svg": svgs,
                "trials": results,
            }))?
        );
    } else {
        print_table(&topo, &results, max_outage_ms);
        if let Some(dir) = &args.svg {
            println!("{} SVG timelines in {}", svgs.len(), dir.display());
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One SVG per trial, `SCENARIO-TRIAL.svg` in `dir`; returns their paths.
fn write_svgs(dir: &Path, results: &[TrialResult]) -> anyhow::Result<Vec<String>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut paths = Vec::new();
    for r in results {
        let Some(tl) = &r.timeline else { continue };
        let path = dir.join(format!("{}-{}.svg", r.scenario, r.trial));
        fs::write(&path, svg::render(r, tl))
            .with_context(|| format!("writing {}", path.display()))?;
        paths.push(path.display().to_string());
    }
    Ok(paths)
}

fn print_table(topo: &Topology, results: &[TrialResult], max: u64) {
    println!(
        "lab: VIP {} ({}) held by {}; objective: outage <= {max} ms (a hung haproxy: its check's bound), VIP never held twice",
        topo.vip_name,
        topo.vip,
        topo.holders
            .iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "{:<20} {:>5} {:>10} {:>7} {:>7} {:>12} {:>6} {:>13}  RESULT",
        "SCENARIO", "TRIAL", "OUTAGE_MS", "PROBES", "FAILED", "MAX_LAT_MS", "MOVES", "DUPLICATE_MS"
    );
    for r in results {
        println!(
            "{:<20} {:>5} {:>10.1} {:>7} {:>7} {:>12.1} {:>6} {:>13.1}  {}",
            r.scenario,
            r.trial,
            r.outage_ms,
            r.probes,
            r.failed_probes,
            r.max_latency_ms,
            r.vip_moves,
            r.duplicate_vip_ms,
            match &r.why {
                None => "ok".to_string(),
                Some(w) => format!("FAIL: {w}"),
            }
        );
        if let Some(n) = &r.note {
            println!("{:<20} {:>5} note: {n}", "", "");
        }
    }
    for s in summarize(results) {
        println!(
            "{}: {}/{} trials met the objective; outage median {:.1} ms, max {:.1} ms; VIP held twice at most {:.1} ms",
            s.scenario, s.passed, s.trials, s.median_outage_ms, s.max_outage_ms, s.max_duplicate_vip_ms
        );
    }
}

/// One lab member: a site node (or the client) in its own namespace.
#[derive(Clone, Debug)]
struct Member {
    /// Index of the site node (none for the client).
    node: Option<usize>,
    name: String,
    ns: String,
    interface: String,
    address: Ipv4Addr,
}

/// What the lab mirrors of the site for one VIP.
#[derive(Debug)]
struct Topology {
    vip_name: String,
    vip: Ipv4Addr,
    prefix: u8,
    holders: Vec<Member>,
    /// Backend nodes with the ports they serve.
    backends: Vec<(Member, BTreeSet<u16>)>,
    client: Member,
    /// The VIP's service ports the client probes.
    ports: Vec<u16>,
    bridge_ns: String,
}

impl Topology {
    fn of(site: &Site, vip: Option<&str>) -> anyhow::Result<Topology> {
        let has_services = |i: usize| site.services.iter().any(|s| s.vip as usize == i);
        let (vi, v) = match vip {
            Some(name) => site
                .vips
                .iter()
                .enumerate()
                .find(|(_, v)| v.name == name)
                .ok_or_else(|| {
                    anyhow!(
                        "site {} has no VIP {name:?} (it has: {})",
                        site.name,
                        site.vips
                            .iter()
                            .map(|v| v.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?,
            None => site
                .vips
                .iter()
                .enumerate()
                .find(|(i, _)| has_services(*i))
                .ok_or_else(|| anyhow!("site {} has no VIP with a service to test", site.name))?,
        };
        if !has_services(vi) {
            bail!(
                "VIP {} carries no service: nothing for the client to probe",
                v.name
            );
        }
        let vip_addr: Ipv4Addr = v
            .address
            .parse()
            .map_err(|_| anyhow!("VIP {}: the lab supports IPv4 only ({})", v.name, v.address))?;
        let net = &site.networks[v.network as usize];
        let prefix: u8 = net
            .cidr
            .split_once('/')
            .and_then(|(_, p)| p.parse().ok())
            .filter(|p| (8..=30).contains(p))
            .ok_or_else(|| {
                anyhow!(
                    "network {}: the lab needs an IPv4 /8../30 ({})",
                    net.name,
                    net.cidr
                )
            })?;
        let tag = format!("hsl{}", std::process::id());
        let member = |i: usize, role: &str| -> anyhow::Result<Member> {
            let n = &site.nodes[i];
            Ok(Member {
                node: Some(i),
                name: n.name.clone(),
                ns: format!("{tag}-{role}{i}"),
                interface: n.interface.clone(),
                address: n.address.parse().map_err(|_| {
                    anyhow!(
                        "node {}: the lab supports IPv4 only ({})",
                        n.name,
                        n.address
                    )
                })?,
            })
        };
        let holders = v
            .holders
            .iter()
            .map(|&h| member(h as usize, "lb"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut backends: Vec<(Member, BTreeSet<u16>)> = Vec::new();
        let mut ports = Vec::new();
        for s in site.services.iter().filter(|s| s.vip as usize == vi) {
            ports.push(s.port_first);
            let port = s.backend_port.unwrap_or(s.port_first);
            for &b in &s.backends {
                if let Some((_, p)) = backends
                    .iter_mut()
                    .find(|(m, _)| m.name == site.nodes[b as usize].name)
                {
                    p.insert(port);
                } else {
                    backends.push((member(b as usize, "be")?, BTreeSet::from([port])));
                }
            }
        }
        // The client takes the highest free address of the network.
        let used: BTreeSet<Ipv4Addr> = site
            .nodes
            .iter()
            .filter_map(|n| n.address.parse().ok())
            .chain(site.vips.iter().filter_map(|v| v.address.parse().ok()))
            .collect();
        let mask = u32::MAX << (32 - prefix);
        let base = u32::from(vip_addr) & mask;
        let broadcast = base | !mask;
        let client_addr = (1..=1024u32)
            .filter_map(|k| broadcast.checked_sub(k))
            .filter(|&a| a > base)
            .map(Ipv4Addr::from)
            .find(|a| !used.contains(a))
            .ok_or_else(|| anyhow!("network {}: no free address for the lab's client", net.name))?;
        Ok(Topology {
            vip_name: v.name.clone(),
            vip: vip_addr,
            prefix,
            holders,
            backends,
            client: Member {
                node: None,
                name: "client".into(),
                ns: format!("{tag}-client"),
                interface: "eth0".into(),
                address: client_addr,
            },
            ports,
            bridge_ns: format!("{tag}-br"),
        })
    }
}

/// What one holder's generated keepalived section says about the VIP: the
/// lab's expectations for a hung haproxy and a returning old master come from
/// the plan, not from constants.
#[derive(Clone, Debug, PartialEq)]
struct HolderVrrp {
    /// `state MASTER`: keepalived ignores `nopreempt` then.
    master: bool,
    priority: u8,
    nopreempt: bool,
    /// The tracked weight-0 script that asks haproxy itself (its
    /// `monitor-uri` frontend), the only check that sees a hung haproxy: its
    /// name, interval, fall and timeout in s.
    hung_check: Option<(String, u32, u32, u32)>,
    /// Longest time a tracked script needs to call a returning haproxy
    /// healthy (interval x rise + timeout), ms.
    rise_ms: u64,
}

impl HolderVrrp {
    fn of(plan: &NodePlan, vip: Ipv4Addr) -> Option<HolderVrrp> {
        let k = plan.keepalived.as_ref()?;
        let vip = vip.to_string();
        let inst = k.instances.iter().find(|i| {
            i.addresses
                .iter()
                .any(|a| a.split('/').next() == Some(vip.as_str()))
        })?;
        let tracked: Vec<_> = k
            .scripts
            .iter()
            .filter(|s| inst.track_scripts.contains(&s.name))
            .collect();
        // keepalived's script timeout defaults to its interval.
        let timeout = |s: &crate::contract::VrrpScript| s.timeout_s.unwrap_or(s.interval_s);
        let monitors: Vec<String> = plan
            .haproxy
            .iter()
            .flat_map(|h| &h.frontends)
            .filter_map(|f| {
                f.monitor_uri
                    .as_ref()
                    .map(|u| format!(":{}{u}", f.port_first))
            })
            .collect();
        let hung_check = tracked
            .iter()
            .filter(|s| s.weight == 0)
            .filter(|s| {
                s.command
                    .iter()
                    .any(|w| monitors.iter().any(|m| w.contains(m.as_str())))
            })
            .map(|s| (s.name.clone(), s.interval_s, s.fall, timeout(s)))
            .min_by_key(|(_, i, f, t)| i * f + t);
        let rise_ms = tracked
            .iter()
            .map(|s| u64::from(s.interval_s * s.rise + timeout(s)) * 1000)
            .max()
            .unwrap_or(0);
        Some(HolderVrrp {
            master: inst.state == VrrpState::Master,
            priority: inst.priority,
            nopreempt: inst.nopreempt,
            hung_check,
            rise_ms,
        })
    }

    /// The bound on a hung haproxy's outage: the check's worst-case detection
    /// (interval x fall + timeout) plus 0.5 s for the VIP's move and load.
    fn hung_bound_ms(&self) -> Option<u64> {
        self.hung_check
            .as_ref()
            .map(|(_, i, f, t)| u64::from(i * f + t) * 1000 + HUNG_MARGIN_MS)
    }

    /// Does this holder, returning, take the VIP back from `current`?
    /// keepalived preempts unless `nopreempt` on a BACKUP, and only a
    /// strictly higher priority wins.
    fn takes_back_from(&self, current: &HolderVrrp) -> bool {
        (self.master || !self.nopreempt) && self.priority > current.priority
    }
}

/// How much longer a window waits for the VIP to leave a failed holder, and
/// how long it goes on after it left late.
const LEAVE_WAIT: Duration = Duration::from_secs(8);
const AFTER_MOVE: Duration = Duration::from_millis(1000);

/// Added to a hung haproxy's detection bound.
const HUNG_MARGIN_MS: u64 = 500;

/// A daemon the lab started, watched by a thread that runs its
/// `ExecStopPost=` hooks however it ends (as systemd does).
struct Daemon {
    pid: i32,
    watcher: Option<JoinHandle<()>>,
}

/// The lab's guard: everything it created, removed on drop.
struct Lab {
    namespaces: Vec<String>,
    dir: tempfile::TempDir,
    /// Per holder: haproxy and keepalived.
    haproxy: Vec<Option<Daemon>>,
    keepalived: Vec<Option<Daemon>>,
    /// Per holder: hooks of haproxy.service and keepalived.service.
    hooks: Vec<(Hooks, Hooks)>,
    /// Set while the lab tears down: watchers then skip the stop hooks.
    closing: Arc<AtomicBool>,
    /// Backend servers: (node, address, port) and, while it runs, its stop
    /// flag and thread.
    backends: Vec<BackendServer>,
    /// Per holder: a process that lives in its namespace for the lab's
    /// whole run (`scope_pgrep`).
    anchors: Vec<Child>,
    /// Per holder: its interface's hardware address (for the ARP check).
    macs: Vec<Option<String>>,
    epoch: Instant,
    vip: Ipv4Addr,
}

impl Lab {
    fn new(topo: &Topology) -> anyhow::Result<Lab> {
        let dir = tempfile::Builder::new()
            .prefix("haseed-lab-")
            .tempdir()
            .context("creating the lab's directory")?;
        let n = topo.holders.len();
        Ok(Lab {
            namespaces: Vec::new(),
            dir,
            haproxy: (0..n).map(|_| None).collect(),
            keepalived: (0..n).map(|_| None).collect(),
            hooks: Vec::new(),
            closing: Arc::new(AtomicBool::new(false)),
            backends: Vec::new(),
            anchors: Vec::new(),
            macs: Vec::new(),
            epoch: Instant::now(),
            vip: topo.vip,
        })
    }

    fn add_ns(&mut self, ns: &str) -> anyhow::Result<()> {
        ip(&["netns", "add", ns])?;
        self.namespaces.push(ns.to_string());
        ip(&["-n", ns, "link", "set", "lo", "up"])
    }

    /// Namespaces, links, backends, then haproxy and keepalived on every
    /// holder (keepalived after haproxy, as the drop-in orders it).
    fn build(&mut self, topo: &Topology, nodes: &[(String, NodeArtifacts)]) -> anyhow::Result<()> {
        let br = topo.bridge_ns.clone();
        self.add_ns(&br)?;
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &br, "link", "set", "br0", "up"])?;
        let members: Vec<Member> = topo
            .holders
            .iter()
            .cloned()
            .chain(topo.backends.iter().map(|(m, _)| m.clone()))
            .chain([topo.client.clone()])
            .collect();
        for (k, m) in members.iter().enumerate() {
            interrupted()?;
            self.add_ns(&m.ns)?;
            let port = format!("p{k}");
            ip(&[
                "-n",
                &br,
                "link",
                "add",
                &port,
                "type",
                "veth",
                "peer",
                "name",
                &m.interface,
                "netns",
                &m.ns,
            ])?;
            ip(&["-n", &br, "link", "set", &port, "master", "br0", "up"])?;
            ip(&[
                "-n",
                &m.ns,
                "addr",
                "add",
                &format!("{}/{}", m.address, topo.prefix),
                "dev",
                &m.interface,
            ])?;
            ip(&["-n", &m.ns, "link", "set", &m.interface, "up"])?;
        }
        self.macs = topo
            .holders
            .iter()
            .map(|h| mac_of(&h.ns, &h.interface))
            .collect();
        for (m, ports) in &topo.backends {
            for &port in ports {
                self.backends.push(BackendServer {
                    member: m.clone(),
                    port,
                    running: None,
                });
                self.start_backend(self.backends.len() - 1)?;
            }
        }
        // The generated files, with state paths moved into the lab.
        for (h, m) in topo.holders.iter().enumerate() {
            let art = nodes
                .iter()
                .find(|(n, _)| *n == m.name)
                .map(|(_, a)| a)
                .ok_or_else(|| anyhow!("node {} was not rendered", m.name))?;
            let home = self.dir.path().join(&m.name);
            fs::create_dir_all(&home)?;
            let adapt = |text: &str| adapt_paths(text, &home);
            let file = |path: &str| {
                art.files
                    .iter()
                    .find(|f| f.path == path)
                    .map(|f| adapt(&f.content))
                    .ok_or_else(|| {
                        anyhow!("node {} has no {path}: it is not a load balancer", m.name)
                    })
            };
            fs::write(home.join("haproxy.cfg"), file("/etc/haproxy/haproxy.cfg")?)?;
            // A node's `pgrep` sees its own processes only; the lab's
            // namespaces share one process table, so scope it to the node's
            // network namespace (through a process that lives there).
            let anchor = self.anchor(&m.ns)?;
            fs::write(
                home.join("keepalived.conf"),
                scope_pgrep(&file("/etc/keepalived/keepalived.conf")?, anchor),
            )?;
            let mut hooks = (Hooks::default(), Hooks::default());
            let mut dropins: Vec<_> = art
                .files
                .iter()
                .filter(|f| f.path.starts_with("/etc/systemd/system/"))
                .collect();
            dropins.sort_by(|a, b| a.path.cmp(&b.path));
            for f in dropins {
                let what = format!("node {} {}", m.name, f.path);
                if f.path.starts_with("/etc/systemd/system/haproxy.service.d/") {
                    hooks
                        .0
                        .add_dropin(&adapt(&f.content), &what)
                        .map_err(|e| anyhow!(e))?;
                } else if f
                    .path
                    .starts_with("/etc/systemd/system/keepalived.service.d/")
                {
                    hooks
                        .1
                        .add_dropin(&adapt(&f.content), &what)
                        .map_err(|e| anyhow!(e))?;
                }
            }
            self.hooks.push(hooks);
            let _ = h;
        }
        for h in 0..topo.holders.len() {
            self.start_haproxy(topo, h)?;
        }
        for h in 0..topo.holders.len() {
            self.start_keepalived(topo, h)?;
        }
        Ok(())
    }

    /// Starts a process that only waits inside `ns`; its pid names the
    /// namespace to `pgrep --ns`.
    fn anchor(&mut self, ns: &str) -> anyhow::Result<u32> {
        let child = ns_command(ns, &["sleep", "86400"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting a process in namespace {ns}"))?;
        let pid = child.id();
        self.anchors.push(child);
        // `ip netns exec` enters the namespace, then execs sleep: bounded wait
        // until the pid is in the namespace.
        let ns_of = |pid: u32| fs::metadata(format!("/proc/{pid}/ns/net")).ok();
        let target = fs::metadata(Path::new("/run/netns").join(ns))
            .with_context(|| format!("namespace {ns}"))?;
        for _ in 0..250 {
            use std::os::unix::fs::MetadataExt;
            if ns_of(pid).is_some_and(|m| m.ino() == target.ino() && m.dev() == target.dev()) {
                return Ok(pid);
            }
            thread::sleep(Duration::from_millis(20));
        }
        bail!("the process started in namespace {ns} did not enter it within 5 s")
    }

    fn start_backend(&mut self, i: usize) -> anyhow::Result<()> {
        let b = &mut self.backends[i];
        let stop = Arc::new(AtomicBool::new(false));
        let (ns, addr, port) = (b.member.ns.clone(), b.member.address, b.port);
        let (tx, rx) = std::sync::mpsc::channel();
        let flag = stop.clone();
        let t = thread::spawn(move || backend(&ns, addr, port, &flag, tx));
        b.running = Some((stop, t));
        rx.recv_timeout(Duration::from_secs(5))
            .map_err(|_| anyhow!("backend {} port {port} did not start", b.member.name))?
            .map_err(|e| anyhow!("backend {} port {port}: {e}", b.member.name))
    }

    /// Stops a backend server: its port then refuses connections.
    fn stop_backend(&mut self, i: usize) {
        if let Some((stop, t)) = self.backends[i].running.take() {
            stop.store(true, Ordering::SeqCst);
            let _ = t.join();
        }
    }

    /// Split brain: the load balancers stop hearing each other for 2 s (their
    /// bridge ports isolated from each other, both still reach the client
    /// and the backends), then the link returns. Both may become MASTER while
    /// cut (a duplicate VIP is expected then); after the link returns the VIP
    /// must be on exactly one holder, and clients served, within 1 s
    /// (`garp_master_refresh` moves the client's ARP entry).
    fn split_brain(&mut self, topo: &Topology, trial: u32) -> anyhow::Result<TrialResult> {
        const CUT: Duration = Duration::from_secs(2);
        let br = topo.bridge_ns.clone();
        // The holders were linked first: bridge ports p0..pN.
        let ports: Vec<String> = (0..topo.holders.len()).map(|k| format!("p{k}")).collect();
        let isolate = |br: &str, ports: &[String], on: &str| -> anyhow::Result<()> {
            for p in ports {
                ip(&[
                    "-n",
                    br,
                    "link",
                    "set",
                    p,
                    "type",
                    "bridge_slave",
                    "isolated",
                    on,
                ])?;
            }
            Ok(())
        };
        let healed_at: Arc<Mutex<Option<f64>>> = Arc::new(Mutex::new(None));
        let mut healer: Option<JoinHandle<anyhow::Result<()>>> = None;
        let epoch = self.epoch;
        let measured = self.measure(
            topo,
            Duration::from_millis(300),
            CUT + Duration::from_millis(2500),
            &mut |_| {
                isolate(&br, &ports, "on")?;
                let (br, ports, healed_at) = (br.clone(), ports.clone(), healed_at.clone());
                healer = Some(thread::spawn(move || {
                    // Bounded: one sleep, then the link returns.
                    thread::sleep(CUT);
                    isolate(&br, &ports, "off")?;
                    *healed_at.lock().expect("no panic holds it") = Some(ms(epoch.elapsed()));
                    Ok(())
                }));
                Ok(())
            },
        );
        let healed = match healer {
            Some(h) => h
                .join()
                .map_err(|_| anyhow!("healer panicked"))
                .and_then(|r| r),
            None => Ok(()),
        };
        if healed.is_err() || measured.is_err() {
            // Never leave the load balancers cut.
            let _ = isolate(&br, &ports, "off");
        }
        healed?;
        let m = measured?;
        let (probes, samples) = (&m.probes, &m.samples);
        let heal = healed_at
            .lock()
            .expect("no panic holds it")
            .ok_or_else(|| anyhow!("the link did not return"))?;
        // Figures after the link returned: the split itself is expected.
        let after: Vec<Probe> = probes.iter().filter(|p| p.t_ms >= heal).cloned().collect();
        let after_samples: Vec<Sample> = samples
            .iter()
            .filter(|(t, _)| *t >= heal)
            .cloned()
            .collect();
        let mut r = figures("split-brain", trial, &after, &after_samples);
        let mut whole = self.trial(topo, "split-brain", trial, &m, "LB link cut".into());
        r.vip_moves = whole.vip_moves;
        r.timeline = whole.timeline.take().map(|mut t| {
            t.marks.push((heal, "link back".into()));
            t
        });
        // Converged: from some sample on, exactly one holder to the end.
        let single = |h: &Vec<(bool, bool)>| h.iter().filter(|(a, b)| *a || *b).count() == 1;
        let converged = after_samples
            .iter()
            .rposition(|(_, h)| !single(h))
            .map_or(Some(heal), |k| after_samples.get(k + 1).map(|(t, _)| *t));
        r.why = match converged {
            None => Some("the VIP was still held twice 2.5 s after the link returned".into()),
            Some(t) if t - heal > 1000.0 => Some(format!(
                "the VIP converged {:.0} ms after the link returned (> 1000 ms)",
                t - heal
            )),
            Some(_) if r.outage_ms > 1000.0 => Some(format!(
                "clients saw {:.1} ms of outage after the link returned (> 1000 ms)",
                r.outage_ms
            )),
            Some(_) => None,
        };
        r.passed = r.why.is_none();
        self.settle(topo)?;
        Ok(r)
    }

    /// A backend server stops (a different one each trial). haproxy's
    /// `retries` and `redispatch` hide a refused connect, but in TCP mode a
    /// connection the backend had already accepted dies with it; the issue's
    /// bound is then the health check's window (`inter x fall` of that server
    /// in the active holder's haproxy plan), after which haproxy stops
    /// sending to it. Any failed probe beyond that, or with no check, fails.
    fn backend_killed(
        &mut self,
        topo: &Topology,
        trial: u32,
        plans: &[NodePlan],
    ) -> anyhow::Result<TrialResult> {
        let i = (trial as usize - 1) % self.backends.len();
        let window_ms = self.active(topo).ok().and_then(|h| {
            let plan = plans.get(topo.holders[h].node?)?;
            check_window_ms(plan, self.backends[i].member.address, self.backends[i].port)
        });
        let server = self.backends[i].running.as_ref().map(|(s, _)| s.clone());
        let m = self.measure(
            topo,
            Duration::from_millis(300),
            Duration::from_millis(1700),
            &mut |_| {
                if let Some(s) = &server {
                    s.store(true, Ordering::SeqCst);
                }
                Ok(())
            },
        )?;
        let mark = format!(
            "backend {} port {} stopped",
            self.backends[i].member.name, self.backends[i].port
        );
        let mut r = self.trial(topo, "backend-killed", trial, &m, mark);
        let (name, port) = (&self.backends[i].member.name, self.backends[i].port);
        if r.failed_probes > 0 {
            if let Some(w) = window_ms.filter(|&w| r.outage_ms <= w as f64) {
                r.note = Some(format!(
                    "{} failed {} ({:.1} ms) after backend {name} port {port} died: within \
                     haproxy's check window for it ({w} ms); in TCP mode a connection the \
                     backend had accepted cannot be retried",
                    r.failed_probes,
                    if r.failed_probes == 1 {
                        "probe"
                    } else {
                        "probes"
                    },
                    r.outage_ms
                ));
            }
        }
        r.why = if r.failed_probes > 0 && r.note.is_none() {
            Some(format!(
                "{} failed probes after backend {name} port {port} died ({})",
                r.failed_probes,
                match window_ms {
                    Some(w) => format!("outage {:.1} ms > its check window {w} ms", r.outage_ms),
                    None => "haproxy has no health check on it".into(),
                }
            ))
        } else if r.vip_moves > 0 {
            Some("the VIP moved".into())
        } else {
            None
        };
        r.passed = r.why.is_none();
        self.stop_backend(i);
        self.start_backend(i)?;
        Ok(r)
    }

    fn start_haproxy(&mut self, topo: &Topology, h: usize) -> anyhow::Result<()> {
        let m = &topo.holders[h];
        let home = self.dir.path().join(&m.name);
        let hooks = self.hooks[h].0.clone();
        run_hooks(
            &m.ns,
            &hooks.start_pre,
            &format!("{} haproxy ExecStartPre", m.name),
        )?;
        let cfg = home.join("haproxy.cfg");
        let child = ns_command(&m.ns, &["haproxy", "-db", "-f", path_str(&cfg)?])
            .stdout(Stdio::null())
            .stderr(Stdio::from(fs::File::create(home.join("haproxy.log"))?))
            .spawn()
            .with_context(|| format!("starting haproxy for {}", m.name))?;
        // haproxy is ready within milliseconds; systemd runs ExecStartPost
        // once it reports ready.
        thread::sleep(Duration::from_millis(200));
        let d = self.watch(
            child,
            m.ns.clone(),
            hooks.stop_post.clone(),
            format!("{} haproxy", m.name),
        );
        if !pid_alive(d.pid) {
            bail!(
                "haproxy for {} exited at start: {}",
                m.name,
                fs::read_to_string(home.join("haproxy.log")).unwrap_or_default()
            );
        }
        self.haproxy[h] = Some(d);
        run_hooks(
            &m.ns,
            &hooks.start_post,
            &format!("{} haproxy ExecStartPost", m.name),
        )
    }

    fn start_keepalived(&mut self, topo: &Topology, h: usize) -> anyhow::Result<()> {
        let m = &topo.holders[h];
        let home = self.dir.path().join(&m.name);
        let hooks = self.hooks[h].1.clone();
        run_hooks(
            &m.ns,
            &hooks.start_pre,
            &format!("{} keepalived ExecStartPre", m.name),
        )?;
        let p = |n: &str| home.join(n).to_string_lossy().into_owned();
        // A crashed keepalived's VRRP child is reparented; where nothing reaps
        // it (a container's init) it stays a zombie, and keepalived takes the
        // stale pid file for a running daemon. systemd reaps; the lab removes
        // the pid files.
        for f in ["keepalived.pid", "vrrp.pid", "checkers.pid"] {
            let _ = fs::remove_file(home.join(f));
        }
        let child = ns_command(
            &m.ns,
            &[
                "keepalived",
                "-n",
                "-l",
                "-D",
                "-P",
                "-f",
                &p("keepalived.conf"),
                "-p",
                &p("keepalived.pid"),
                "-r",
                &p("vrrp.pid"),
                "-c",
                &p("checkers.pid"),
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(home.join("keepalived.log"))?,
        ))
        .spawn()
        .with_context(|| format!("starting keepalived for {}", m.name))?;
        let d = self.watch(
            child,
            m.ns.clone(),
            hooks.stop_post.clone(),
            format!("{} keepalived", m.name),
        );
        self.keepalived[h] = Some(d);
        run_hooks(
            &m.ns,
            &hooks.start_post,
            &format!("{} keepalived ExecStartPost", m.name),
        )
    }

    /// A thread waits for the daemon to end, then runs its stop hooks.
    fn watch(
        &self,
        mut child: Child,
        ns: String,
        stop_post: Vec<ExecCommand>,
        what: String,
    ) -> Daemon {
        let pid = child.id() as i32;
        let closing = self.closing.clone();
        let watcher = thread::spawn(move || {
            let _ = child.wait();
            if !closing.load(Ordering::SeqCst) {
                if let Err(e) = run_hooks(&ns, &stop_post, &format!("{what} ExecStopPost")) {
                    eprintln!("lab: {e:#}");
                }
            }
        });
        Daemon {
            pid,
            watcher: Some(watcher),
        }
    }

    /// Which holders have the VIP now, read in the order 0..n then n..0 (see
    /// `figures`): a holder's two readings enclose those of the later ones.
    fn holding(&self, topo: &Topology) -> Vec<(bool, bool)> {
        let first = self.read_holders(topo.holders.iter());
        let mut second = self.read_holders(topo.holders.iter().rev());
        second.reverse();
        first.into_iter().zip(second).collect()
    }

    fn read_holders<'m>(&self, holders: impl Iterator<Item = &'m Member>) -> Vec<bool> {
        let vip = self.vip.to_string();
        holders
            .map(|m| {
                Command::new("ip")
                    .args(["-n", &m.ns, "-o", "-4", "addr", "show", "dev", &m.interface])
                    .stderr(Stdio::null())
                    .output()
                    .map(|o| {
                        String::from_utf8_lossy(&o.stdout)
                            .split_whitespace()
                            .any(|w| w.split('/').next() == Some(vip.as_str()))
                    })
                    .unwrap_or(false)
            })
            .collect()
    }

    /// Waits until exactly one holder has the VIP and a probe succeeds.
    fn settle(&self, topo: &Topology) -> anyhow::Result<()> {
        let start = Instant::now();
        let mut held = 0;
        while start.elapsed() < SETTLE {
            interrupted()?;
            held = self.holding(topo).iter().filter(|(a, b)| *a && *b).count();
            if held == 1 {
                let ok = in_ns(&topo.client.ns, {
                    let (vip, ports) = (topo.vip, topo.ports.clone());
                    move || ports.iter().all(|&p| probe(vip, p).is_ok())
                })?;
                if ok {
                    return Ok(());
                }
            }
            thread::sleep(Duration::from_millis(100));
        }
        let logs: Vec<String> = topo
            .holders
            .iter()
            .map(|m| {
                let log = fs::read_to_string(self.dir.path().join(&m.name).join("keepalived.log"))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(12).collect();
                format!(
                    "{}:\n  {}",
                    m.name,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n  ")
                )
            })
            .collect();
        bail!(
            "VIP {} did not settle on exactly one holder within {} s ({held} held it); keepalived said:\n{}",
            topo.vip_name,
            SETTLE.as_secs(),
            logs.join("\n")
        )
    }

    /// Probes for `before` ms, runs `action`, probes until `after` ms past it.
    fn measure(
        &mut self,
        topo: &Topology,
        before: Duration,
        after: Duration,
        action: &mut dyn FnMut(&mut Lab) -> anyhow::Result<()>,
    ) -> anyhow::Result<Measured> {
        self.measure_leaving(topo, before, after, None, action)
    }

    /// As `measure`; with `leaving: Some(h)`, while holder `h` still has the
    /// VIP the window grows by up to `LEAVE_WAIT` past `after`, and ends
    /// `AFTER_MOVE` after it left: a slow failover (a polling check: ~3.5 s)
    /// is measured whole instead of cut off.
    fn measure_leaving(
        &mut self,
        topo: &Topology,
        before: Duration,
        after: Duration,
        leaving: Option<usize>,
        action: &mut dyn FnMut(&mut Lab) -> anyhow::Result<()>,
    ) -> anyhow::Result<Measured> {
        let stop = Arc::new(AtomicBool::new(false));
        let epoch = self.epoch;
        let probers: Vec<JoinHandle<anyhow::Result<Vec<Probe>>>> = topo
            .ports
            .iter()
            .map(|&port| {
                let (stop, ns, vip) = (stop.clone(), topo.client.ns.clone(), topo.vip);
                thread::spawn(move || {
                    enter_netns(&ns)?;
                    let mut out = Vec::new();
                    // Bounded: at most 10 minutes of probes.
                    for _ in 0..30_000 {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let t0 = Instant::now();
                        let r = probe(vip, port);
                        out.push(Probe {
                            t_ms: ms(t0 - epoch),
                            ok: r.is_ok(),
                            latency_ms: ms(t0.elapsed()),
                        });
                        if let Some(rest) = PROBE_EVERY.checked_sub(t0.elapsed()) {
                            thread::sleep(rest);
                        }
                    }
                    Ok(out)
                })
            })
            .collect();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let t_start = Instant::now();
        let mut acted = false;
        let mut action_ms = 0.0;
        let mut total = before + after;
        let longest = total + LEAVE_WAIT;
        let mut failed = Ok(());
        while t_start.elapsed() < total {
            if crate::interrupt::received().is_some() {
                break;
            }
            let t = ms(self.epoch.elapsed());
            let h = self.holding(topo);
            if let Some(old) = leaving.filter(|_| acted) {
                let there = h.get(old).is_some_and(|(a, b)| *a || *b);
                let end = t_start.elapsed() + AFTER_MOVE;
                if there {
                    total = longest;
                } else if total == longest && end < longest {
                    // It left late: watch a little longer, then stop.
                    total = end.max(before + after);
                }
            }
            samples.lock().expect("no panic holds it").push((t, h));
            if !acted && t_start.elapsed() >= before {
                acted = true;
                action_ms = ms(self.epoch.elapsed());
                failed = action(self);
                if failed.is_err() {
                    break;
                }
            }
            thread::sleep(PROBE_EVERY);
        }
        // The probers stop however the window ended.
        stop.store(true, Ordering::SeqCst);
        let mut probes = Vec::new();
        for p in probers {
            probes.extend(p.join().map_err(|_| anyhow!("prober panicked"))??);
        }
        failed?;
        interrupted()?;
        probes.sort_by(|a, b| a.t_ms.total_cmp(&b.t_ms));
        let samples = std::mem::take(&mut *samples.lock().expect("no panic holds it"));
        Ok(Measured {
            probes,
            samples,
            action_ms,
        })
    }

    /// A trial's figures with its timeline attached (`mark` names the action).
    fn trial(
        &self,
        topo: &Topology,
        scenario: &'static str,
        trial: u32,
        m: &Measured,
        mark: String,
    ) -> TrialResult {
        let mut r = figures(scenario, trial, &m.probes, &m.samples);
        r.timeline = Some(Timeline {
            holders: topo.holders.iter().map(|h| h.name.clone()).collect(),
            probes: m.probes.clone(),
            samples: m.samples.clone(),
            marks: vec![(m.action_ms, mark)],
        });
        r
    }

    fn steady(&mut self, topo: &Topology, trial: u32) -> anyhow::Result<TrialResult> {
        let m = self.measure(
            topo,
            Duration::from_millis(500),
            Duration::from_millis(500),
            &mut |_| Ok(()),
        )?;
        let mut r = self.trial(topo, "steady", trial, &m, "nothing done".into());
        let unheld = m
            .samples
            .iter()
            .filter(|(_, h)| h.iter().filter(|(a, b)| *a && *b).count() != 1)
            .count();
        let arp = self.arp_check(topo, &mut r)?;
        r.why = if r.failed_probes > 0 {
            Some(format!("{} failed probes", r.failed_probes))
        } else if unheld > 0 {
            Some(format!("{unheld} samples without exactly one holder"))
        } else {
            arp
        };
        r.passed = r.why.is_none();
        Ok(r)
    }

    /// Asks from the client who has the VIP (one ARP request) and records
    /// who answered in `r`. Returns the problem when anyone but the one
    /// holder that has the VIP answered, or nobody did.
    fn arp_check(&self, topo: &Topology, r: &mut TrialResult) -> anyhow::Result<Option<String>> {
        let c = &topo.client;
        let macs = in_ns(&c.ns, {
            let (interface, me, vip) = (c.interface.clone(), c.address, topo.vip);
            move || arp::who_has(&interface, me, vip, ARP_WAIT)
        })?
        .context("asking who has the VIP (ARP) from the client")?;
        let holder = self.active(topo).ok();
        let mut ok = holder.is_some() && macs.len() == 1;
        r.arp_answered_by = macs
            .iter()
            .map(|mac| {
                let mac = arp::mac_string(mac);
                match self
                    .macs
                    .iter()
                    .position(|m| m.as_deref() == Some(mac.as_str()))
                {
                    Some(h) => {
                        ok &= Some(h) == holder;
                        topo.holders[h].name.clone()
                    }
                    None => {
                        ok = false;
                        mac
                    }
                }
            })
            .collect();
        Ok((!ok).then(|| {
            let holder = holder.map_or("no holder", |h| topo.holders[h].name.as_str());
            if r.arp_answered_by.is_empty() {
                format!("nobody answered ARP for the VIP (held by {holder})")
            } else {
                format!(
                    "ARP for the VIP answered by {}; only its holder ({holder}) may answer",
                    r.arp_answered_by.join(", ")
                )
            }
        }))
    }

    /// keepalived on the holder that has the VIP stopped cleanly (SIGTERM) or
    /// crashed (parent and VRRP child SIGKILLed). The VIP must move within
    /// the objective; after a crash the generated `ExecStopPost=` removes it
    /// from the dead node, so it is held twice for at most 0.5 s (none after a
    /// clean stop). keepalived is then started again.
    fn keepalived_stopped(
        &mut self,
        topo: &Topology,
        trial: u32,
        max_ms: u64,
        crash: bool,
    ) -> anyhow::Result<TrialResult> {
        let active = self.active(topo)?;
        let pid = self.keepalived[active]
            .as_ref()
            .map(|d| d.pid)
            .ok_or_else(|| anyhow!("keepalived not running"))?;
        let home = self.dir.path().join(&topo.holders[active].name);
        let vrrp_child: Option<i32> = fs::read_to_string(home.join("vrrp.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        let m = self.measure_leaving(
            topo,
            Duration::from_millis(300),
            Duration::from_millis(1700),
            Some(active),
            &mut |_| {
                // SAFETY: kill(2) on processes this lab started (keepalived
                // and the VRRP child it forked).
                unsafe {
                    if crash {
                        libc::kill(pid, libc::SIGKILL);
                        if let Some(c) = vrrp_child.filter(|c| *c > 1) {
                            libc::kill(c, libc::SIGKILL);
                        }
                    } else {
                        libc::kill(pid, libc::SIGTERM);
                    }
                }
                Ok(())
            },
        )?;
        let name = if crash {
            "keepalived-crash"
        } else {
            "keepalived-stop"
        };
        let allowed_duplicate = if crash { 500.0 } else { 0.0 };
        let what = if crash {
            "SIGKILL keepalived + VRRP child"
        } else {
            "SIGTERM keepalived"
        };
        let mark = format!("{what} on {}", topo.holders[active].name);
        let mut r = self.trial(topo, name, trial, &m, mark);
        r.why = if r.vip_moves == 0 {
            Some(format!(
                "the VIP did not leave {} whose keepalived ended",
                topo.holders[active].name
            ))
        } else if r.outage_ms > max_ms as f64 {
            Some(format!("outage {:.1} ms > {max_ms} ms", r.outage_ms))
        } else if r.duplicate_vip_ms > allowed_duplicate {
            Some(format!(
                "VIP held twice for {:.1} ms (allowed {allowed_duplicate} ms)",
                r.duplicate_vip_ms
            ))
        } else {
            None
        };
        r.passed = r.why.is_none();
        if let Some(mut d) = self.keepalived[active].take() {
            if let Some(w) = d.watcher.take() {
                let _ = w.join();
            }
        }
        // The crashed VRRP child must be gone before keepalived starts again.
        if let Some(c) = vrrp_child {
            for _ in 0..100 {
                if !pid_alive(c) {
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        self.start_keepalived(topo, active)?;
        for _ in 0..30 {
            interrupted()?;
            thread::sleep(Duration::from_millis(100));
        }
        self.settle(topo)?;
        Ok(r)
    }

    /// The holder that has the VIP (both readings).
    fn active(&self, topo: &Topology) -> anyhow::Result<usize> {
        self.holding(topo)
            .iter()
            .position(|(a, b)| *a && *b)
            .ok_or_else(|| anyhow!("no holder has VIP {} before the trial", topo.vip_name))
    }

    /// Sleeps `d` in 100 ms steps, unwinding on Ctrl-C.
    fn pause(d: Duration) -> anyhow::Result<()> {
        let end = Instant::now() + d;
        for _ in 0..(d.as_millis() / 100 + 1) {
            interrupted()?;
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            thread::sleep(left.min(Duration::from_millis(100)));
        }
        Ok(())
    }

    /// haproxy hangs on the holder that has the VIP (SIGSTOP: alive, its
    /// sockets open, nothing served). The track file does not see it; only a
    /// tracked check that asks haproxy itself does, so the bound is that
    /// check's interval x fall + timeout from the plan, plus a margin (not the
    /// 100 ms objective of a dying haproxy). haproxy then continues (SIGCONT)
    /// and the lab waits for the node to be healthy again.
    fn haproxy_hung(
        &mut self,
        topo: &Topology,
        trial: u32,
        vrrp: &[HolderVrrp],
    ) -> anyhow::Result<TrialResult> {
        let active = self.active(topo)?;
        let name = topo.holders[active].name.clone();
        let pid = self.haproxy[active]
            .as_ref()
            .map(|d| d.pid)
            .ok_or_else(|| anyhow!("haproxy not running on {name}"))?;
        let bound = vrrp[active].hung_bound_ms();
        // Without a check that sees it, watch 4 s: the VIP stays put.
        let window = Duration::from_millis(bound.unwrap_or(3000) + 1000);
        let m = self.measure(topo, Duration::from_millis(300), window, &mut |_| {
            // SAFETY: kill(2) on a pid this lab spawned and still watches.
            unsafe { libc::kill(pid, libc::SIGSTOP) };
            Ok(())
        });
        // Whatever happened, haproxy continues.
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        let m = m?;
        let mut r = self.trial(
            topo,
            "haproxy-hung",
            trial,
            &m,
            format!("SIGSTOP haproxy on {name}"),
        );
        r.note = Some(match (&vrrp[active].hung_check, bound) {
            (Some((check, i, f, t)), Some(b)) => format!(
                "bound {b} ms: {check} interval {i} s x fall {f} + timeout {t} s + {HUNG_MARGIN_MS} ms"
            ),
            _ => format!(
                "{name} tracks no weight-0 check of haproxy's monitor-uri: nothing sees a hung haproxy"
            ),
        });
        r.why = match bound {
            None => Some(format!(
                "no tracked check sees a hung haproxy on {name} (the VIP moved {} times)",
                r.vip_moves
            )),
            Some(_) if r.vip_moves == 0 => {
                Some(format!("the VIP stayed on {name} whose haproxy hangs"))
            }
            Some(b) if r.outage_ms > b as f64 => {
                Some(format!("outage {:.1} ms > {b} ms", r.outage_ms))
            }
            Some(_) if r.duplicate_vip_ms > 0.0 => {
                Some(format!("VIP held twice for {:.1} ms", r.duplicate_vip_ms))
            }
            Some(_) => None,
        };
        r.passed = r.why.is_none();
        // The checks need `rise` good answers before the node is a
        // candidate again.
        Self::pause(Duration::from_millis(vrrp[active].rise_ms + 500))?;
        self.settle(topo)?;
        Ok(r)
    }

    /// The old master returns after a failover (its haproxy restarted in odd
    /// trials, its keepalived in even ones). What must happen depends on the
    /// generated keepalived configuration: with `nopreempt` (state BACKUP) or
    /// equal priorities the VIP stays where it is, no move and no failed
    /// probe; a site whose returning holder preempts gets the move reported
    /// (in `note`), and only its outage is judged.
    fn old_master_restored(
        &mut self,
        topo: &Topology,
        trial: u32,
        vrrp: &[HolderVrrp],
        max_ms: u64,
    ) -> anyhow::Result<TrialResult> {
        let old = self.active(topo)?;
        let name = topo.holders[old].name.clone();
        let keepalived = trial.is_multiple_of(2);
        // The failover, not measured: the VIP leaves the old master.
        let pid = if keepalived {
            self.keepalived[old].as_ref().map(|d| d.pid)
        } else {
            self.haproxy[old].as_ref().map(|d| d.pid)
        }
        .ok_or_else(|| anyhow!("{name}: the daemon to stop is not running"))?;
        let signal = if keepalived {
            libc::SIGTERM
        } else {
            libc::SIGKILL
        };
        // SAFETY: kill(2) on a pid this lab spawned and still watches.
        unsafe { libc::kill(pid, signal) };
        let slot = if keepalived {
            self.keepalived[old].take()
        } else {
            self.haproxy[old].take()
        };
        if let Some(mut d) = slot {
            // Its ExecStopPost has run once the watcher ends.
            if let Some(w) = d.watcher.take() {
                let _ = w.join();
            }
        }
        // Bounded: the reference settings take ~3.5 s to fail over.
        let mut moved = false;
        for _ in 0..100 {
            interrupted()?;
            let held = self.holding(topo);
            let holders: Vec<usize> = (0..held.len())
                .filter(|&h| held[h].0 && held[h].1)
                .collect();
            if holders.len() == 1 && holders[0] != old {
                moved = true;
                break;
            }
            thread::sleep(Duration::from_millis(100));
        }
        if moved {
            self.settle(topo)?;
        }
        let current = if moved { self.active(topo)? } else { old };
        let daemon = if keepalived { "keepalived" } else { "haproxy" };
        if current == old {
            // No failover happened: nothing to fail back from.
            if keepalived {
                self.start_keepalived(topo, old)?;
            } else {
                self.start_haproxy(topo, old)?;
            }
            let mut r = figures("old-master-restored", trial, &[], &[]);
            r.why = Some(format!(
                "the VIP stayed on {name} for 10 s after its {daemon} stopped: no failover to restore from"
            ));
            Self::pause(Duration::from_millis(vrrp[old].rise_ms))?;
            self.settle(topo)?;
            return Ok(r);
        }
        let back = vrrp[old].takes_back_from(&vrrp[current]);
        let window = Duration::from_millis(vrrp[old].rise_ms + 1500);
        let m = self.measure(topo, Duration::from_millis(300), window, &mut |lab| {
            if keepalived {
                lab.start_keepalived(topo, old)
            } else {
                lab.start_haproxy(topo, old)
            }
        })?;
        let mut r = self.trial(
            topo,
            "old-master-restored",
            trial,
            &m,
            format!("{daemon} back on {name}"),
        );
        let (o, c) = (&vrrp[old], &vrrp[current]);
        let now = &topo.holders[current].name;
        r.note = Some(if back {
            format!(
                "{daemon} returned on {name}; the site preempts ({name}: state {}, priority {} > {now}: {}{}): failback expected, {} VIP moves",
                if o.master { "MASTER" } else { "BACKUP" },
                o.priority,
                c.priority,
                if o.nopreempt { ", nopreempt" } else { "" },
                r.vip_moves
            )
        } else {
            format!(
                "{daemon} returned on {name}; no failback expected (state {}{}, priority {} vs {now}'s {})",
                if o.master { "MASTER" } else { "BACKUP" },
                if o.nopreempt { ", nopreempt" } else { "" },
                o.priority,
                c.priority
            )
        });
        r.why = if !back && r.vip_moves > 0 {
            Some(format!(
                "the VIP moved {} times when {name} returned (no failback expected)",
                r.vip_moves
            ))
        } else if !back && r.failed_probes > 0 {
            Some(format!(
                "{} failed probes ({:.1} ms) when {name} returned",
                r.failed_probes, r.outage_ms
            ))
        } else if r.outage_ms > max_ms as f64 {
            Some(format!("outage {:.1} ms > {max_ms} ms", r.outage_ms))
        } else if r.duplicate_vip_ms > 0.0 {
            Some(format!("VIP held twice for {:.1} ms", r.duplicate_vip_ms))
        } else {
            None
        };
        r.passed = r.why.is_none();
        self.settle(topo)?;
        Ok(r)
    }

    /// SIGKILL haproxy on the holder that has the VIP; the VIP must move
    /// within the objective. haproxy is then started again (as systemd's
    /// `Restart=` would) and the lab waits for the node to be healthy.
    fn haproxy_killed(
        &mut self,
        topo: &Topology,
        trial: u32,
        max_ms: u64,
    ) -> anyhow::Result<TrialResult> {
        let active = self.active(topo)?;
        let pid = self.haproxy[active]
            .as_ref()
            .map(|d| d.pid)
            .ok_or_else(|| anyhow!("haproxy not running"))?;
        let m = self.measure_leaving(
            topo,
            Duration::from_millis(300),
            Duration::from_millis(1700),
            Some(active),
            &mut |_| {
                // SAFETY: kill(2) on a pid this lab spawned and still watches.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                Ok(())
            },
        )?;
        let mark = format!("SIGKILL haproxy on {}", topo.holders[active].name);
        let mut r = self.trial(topo, "haproxy-killed", trial, &m, mark);
        // The old holder keeps no VIP on its interface; if it keeps one
        // locally (on lo) it must not answer ARP for it.
        let arp = self.arp_check(topo, &mut r)?;
        r.why = if r.vip_moves == 0 {
            Some(format!(
                "the VIP stayed on {} whose haproxy is dead",
                topo.holders[active].name
            ))
        } else if r.outage_ms > max_ms as f64 {
            Some(format!("outage {:.1} ms > {max_ms} ms", r.outage_ms))
        } else if r.duplicate_vip_ms > 0.0 {
            Some(format!("VIP held twice for {:.1} ms", r.duplicate_vip_ms))
        } else {
            arp
        };
        r.passed = r.why.is_none();
        // Restore: the watcher ran ExecStopPost; start haproxy again.
        if let Some(mut d) = self.haproxy[active].take() {
            if let Some(w) = d.watcher.take() {
                let _ = w.join();
            }
        }
        self.start_haproxy(topo, active)?;
        // The HTTP check needs `rise` good answers before the node is a
        // candidate again.
        for _ in 0..40 {
            interrupted()?;
            thread::sleep(Duration::from_millis(100));
        }
        self.settle(topo)?;
        Ok(r)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.closing.store(true, Ordering::SeqCst);
        for d in self
            .keepalived
            .iter_mut()
            .chain(self.haproxy.iter_mut())
            .flatten()
        {
            // SAFETY: signals to processes this lab spawned. A stopped
            // (hung) haproxy only sees SIGTERM once it continues.
            unsafe {
                libc::kill(d.pid, libc::SIGTERM);
                libc::kill(d.pid, libc::SIGCONT);
            }
        }
        for d in self
            .keepalived
            .iter_mut()
            .chain(self.haproxy.iter_mut())
            .flatten()
        {
            let deadline = Instant::now() + Duration::from_secs(3);
            while pid_alive(d.pid) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
            if pid_alive(d.pid) {
                // SAFETY: as above.
                unsafe { libc::kill(d.pid, libc::SIGKILL) };
            }
            if let Some(w) = d.watcher.take() {
                let _ = w.join();
            }
        }
        // Anything else left in our namespaces (keepalived's VRRP child, a
        // hook) was started by the lab too.
        for ns in &self.namespaces {
            if let Ok(o) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        // SAFETY: a process inside a namespace this lab made.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            }
        }
        for a in &mut self.anchors {
            let _ = a.kill();
            let _ = a.wait();
        }
        for i in 0..self.backends.len() {
            self.stop_backend(i);
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "delete", ns]).status();
        }
        // Debugging the lab itself: keep its files (configs, daemon logs).
        if std::env::var_os("HASEED_LAB_KEEP").is_some() {
            let dir = std::mem::replace(
                &mut self.dir,
                tempfile::Builder::new()
                    .prefix("haseed-lab-")
                    .tempdir()
                    .expect("tempdir"),
            );
            eprintln!("lab: kept {}", dir.keep().display());
        }
    }
}

/// A backend server the lab runs for a backend node.
struct BackendServer {
    member: Member,
    port: u16,
    running: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

/// One client probe.
#[derive(Clone, Debug)]
pub struct Probe {
    pub t_ms: f64,
    pub ok: bool,
    pub latency_ms: f64,
}

/// A VIP sample: time, and per holder its two readings (see `holding`).
pub type Sample = (f64, Vec<(bool, bool)>);

/// One measurement window: probes, VIP samples, when the action ran.
struct Measured {
    probes: Vec<Probe>,
    samples: Vec<Sample>,
    action_ms: f64,
}

/// The figures of one trial from its probes and VIP samples. Reading the
/// holders one after another, a fast move would look like a duplicate; so a
/// sample counts as a duplicate only when a holder had the VIP in both of its
/// readings while a later holder (read in between) had it too.
fn figures(
    scenario: &'static str,
    trial: u32,
    probes: &[Probe],
    samples: &[Sample],
) -> TrialResult {
    let mut outage: f64 = 0.0;
    let mut since: Option<f64> = None;
    for p in probes {
        match (p.ok, since) {
            (false, None) => since = Some(p.t_ms),
            (true, Some(s)) => {
                outage = outage.max(p.t_ms - s);
                since = None;
            }
            _ => {}
        }
    }
    if let (Some(s), Some(last)) = (since, probes.last()) {
        outage = outage.max(last.t_ms + last.latency_ms - s);
    }
    let mut moves = 0;
    let mut owner: Option<usize> = None;
    let mut duplicate = 0.0;
    for (k, (t, held)) in samples.iter().enumerate() {
        let twice = held
            .iter()
            .enumerate()
            .any(|(i, (a, b))| *a && *b && held[i + 1..].iter().any(|(c, d)| *c || *d));
        let holders: Vec<usize> = held
            .iter()
            .enumerate()
            .filter(|(_, (a, b))| *a && *b)
            .map(|(i, _)| i)
            .collect();
        if twice {
            let next = samples.get(k + 1).map_or(*t, |(n, _)| *n);
            duplicate += next - t;
        }
        if let [one] = holders[..] {
            if owner.is_some_and(|o| o != one) {
                moves += 1;
            }
            owner = Some(one);
        }
    }
    TrialResult {
        scenario,
        trial,
        outage_ms: outage,
        probes: probes.len(),
        failed_probes: probes.iter().filter(|p| !p.ok).count(),
        max_latency_ms: probes
            .iter()
            .filter(|p| p.ok)
            .map(|p| p.latency_ms)
            .fold(0.0, f64::max),
        vip_moves: moves,
        duplicate_vip_ms: duplicate,
        arp_answered_by: Vec::new(),
        passed: false,
        why: None,
        note: None,
        timeline: None,
    }
}

/// A TCP connect and one request; success is an answer within the timeout.
fn probe(vip: Ipv4Addr, port: u16) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(&SocketAddr::from((vip, port)), PROBE_TIMEOUT)?;
    s.set_read_timeout(Some(PROBE_TIMEOUT))?;
    s.set_write_timeout(Some(PROBE_TIMEOUT))?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf)?;
    if n == 0 {
        return Err(std::io::Error::other("closed without an answer"));
    }
    Ok(())
}

/// A tiny backend server in its node's namespace, until `stop`.
fn backend(
    ns: &str,
    addr: Ipv4Addr,
    port: u16,
    stop: &AtomicBool,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let listener = enter_netns(ns)
        .map_err(|e| e.to_string())
        .and_then(|()| TcpListener::bind((addr, port)).map_err(|e| e.to_string()))
        .and_then(|l| {
            l.set_nonblocking(true)
                .map(|()| l)
                .map_err(|e| e.to_string())
        });
    let listener = match listener {
        Ok(l) => {
            let _ = ready.send(Ok(()));
            l
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((mut s, _)) => {
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf);
                let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n");
            }
            Err(_) => thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// Runs `f` on a thread inside network namespace `ns` (a name under
/// /run/netns).
pub fn in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let ns = ns.to_string();
    thread::spawn(move || enter_netns(&ns).map(|()| f()))
        .join()
        .map_err(|_| anyhow!("lab thread panicked"))?
        .map_err(Into::into)
}

/// Moves the calling thread (only it) into network namespace `ns`.
fn enter_netns(ns: &str) -> std::io::Result<()> {
    let f = fs::File::open(Path::new("/run/netns").join(ns))?;
    // SAFETY: setns on a namespace file we opened; affects this thread only.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The generated files name the node's real paths: the lab moves state and
/// sockets into the node's lab directory.
fn adapt_paths(text: &str, home: &Path) -> String {
    let h = home.display();
    text.replace("/var/lib/haseed", &format!("{h}/var-lib-haseed"))
        .replace("/run/haseed", &format!("{h}/run-haseed"))
        .replace("/run/haproxy/admin.sock", &format!("{h}/admin.sock"))
}

/// keepalived's `pgrep` checks (the reference's process check) see only the
/// processes of the node's network namespace, as `pgrep` on the real node
/// sees only the node's: without this, one LB's check finds the other LB's
/// haproxy and a dead haproxy never moves the VIP.
fn scope_pgrep(text: &str, anchor: u32) -> String {
    text.replace(
        "\"/usr/bin/pgrep ",
        &format!("\"/usr/bin/pgrep --nslist net --ns {anchor} "),
    )
}

fn ns_command(ns: &str, argv: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns])
        .args(argv)
        .stdin(Stdio::null());
    c
}

/// Runs hooks in order, each bounded to 10 s; a failing one stops the list
/// unless it carries systemd's `-`.
fn run_hooks(ns: &str, hooks: &[ExecCommand], what: &str) -> anyhow::Result<()> {
    for h in hooks {
        let argv: Vec<&str> = h.argv.iter().map(String::as_str).collect();
        let mut cmd = Command::new(argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Spawned from a thread inside the namespace, as directly as systemd
        // would (`ip netns exec` costs tens of ms under load).
        let ns_owned = ns.to_string();
        let mut child = thread::spawn(move || {
            enter_netns(&ns_owned)?;
            cmd.spawn()
        })
        .join()
        .map_err(|_| anyhow!("lab thread panicked"))?
        .with_context(|| format!("{what}: running {argv:?}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = child.try_wait()? {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{what}: {argv:?} ran longer than 10 s");
            }
            thread::sleep(Duration::from_millis(5));
        };
        if !status.success() && !h.ignore_failure {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            bail!("{what}: {argv:?} failed ({status}): {}", err.trim());
        }
    }
    Ok(())
}

/// `inter x fall` of the checked server at `address:port` in `plan`'s
/// haproxy: how long haproxy may still send to it after it died.
fn check_window_ms(plan: &NodePlan, address: Ipv4Addr, port: u16) -> Option<u64> {
    let address = address.to_string();
    plan.haproxy
        .as_ref()?
        .backends
        .iter()
        .flat_map(|b| &b.servers)
        .filter(|s| s.address == address && s.port.is_none_or(|p| p == port))
        .filter_map(|s| s.check.as_ref())
        .map(|c| u64::from(c.inter_ms) * u64::from(c.fall.max(1)))
        .max()
}

/// The hardware address of `interface` in namespace `ns` (`aa:bb:..`).
pub fn mac_of(ns: &str, interface: &str) -> Option<String> {
    let o = Command::new("ip")
        .args(["-n", ns, "-o", "link", "show", "dev", interface])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&o.stdout);
    let mut words = text.split_whitespace();
    words.find(|w| *w == "link/ether")?;
    words.next().map(str::to_string)
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let o = Command::new("ip")
        .args(args)
        .output()
        .context("running ip")?;
    if !o.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(())
}

fn pid_alive(pid: i32) -> bool {
    // Zombies count as gone: the watcher reaps them.
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str()
        .ok_or_else(|| anyhow!("{} is not UTF-8", p.display()))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn find_tool(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: f64, ok: bool) -> Probe {
        Probe {
            t_ms: t,
            ok,
            latency_ms: 1.0,
        }
    }

    #[test]
    fn figures_measure_outage_moves_and_duplicates() {
        let probes = [
            p(0.0, true),
            p(20.0, false),
            p(40.0, false),
            p(60.0, true),
            p(80.0, false),
            p(100.0, true),
        ];
        let (y, n) = ((true, true), (false, false));
        let samples = vec![
            (0.0, vec![y, n]),
            (20.0, vec![y, y]),
            // lb1 let go between its readings: a move, not a duplicate.
            (40.0, vec![(true, false), y]),
            (60.0, vec![n, y]),
        ];
        let r = figures("x", 1, &probes, &samples);
        assert_eq!(r.outage_ms, 40.0);
        assert_eq!(r.failed_probes, 3);
        assert_eq!(r.vip_moves, 1);
        assert_eq!(r.duplicate_vip_ms, 20.0);
    }

    #[test]
    fn a_backends_check_window_comes_from_the_plan() {
        use crate::check::fixture::{lb_plan, site};
        let site = site();
        let mut plan = lb_plan(&site, 0);
        let master = site.nodes[2].address.parse().unwrap();
        let check = plan.haproxy.as_ref().unwrap().backends[0].servers[0]
            .check
            .expect("a check");
        let want = u64::from(check.inter_ms) * u64::from(check.fall);
        assert_eq!(check_window_ms(&plan, master, 6443), Some(want));
        // Another port, an address that is no server: no window.
        assert_eq!(check_window_ms(&plan, master, 6444), None);
        assert_eq!(
            check_window_ms(&plan, "10.9.9.9".parse().unwrap(), 6443),
            None
        );
        // An unchecked server: haproxy never stops sending to it.
        for b in &mut plan.haproxy.as_mut().unwrap().backends {
            for s in &mut b.servers {
                s.check = None;
            }
        }
        assert_eq!(check_window_ms(&plan, master, 6443), None);
    }

    #[test]
    fn reads_the_hung_check_and_preemption_from_the_plan() {
        use crate::check::fixture::{lb_plan, site};
        use crate::contract::{Backend, Balance, Frontend, ProxyMode, VrrpScript};
        let site = site();
        let vip: Ipv4Addr = "192.168.3.240".parse().unwrap();
        // The reference plan: a pgrep check only, nothing sees a hung haproxy.
        let mut plan = lb_plan(&site, 0);
        let v = HolderVrrp::of(&plan, vip).expect("instance");
        assert_eq!(v.hung_check, None);
        assert_eq!(v.hung_bound_ms(), None);
        assert_eq!(v.rise_ms, 4000);
        assert!(v.nopreempt && !v.master);
        assert!(HolderVrrp::of(&plan, "10.0.0.1".parse().unwrap()).is_none());
        // An HTTP check of haproxy's monitor-uri, tracked with weight 0.
        let h = plan.haproxy.as_mut().unwrap();
        h.frontends.push(Frontend {
            name: "mon".into(),
            bind_address: Some("127.0.0.1".into()),
            port_first: 8404,
            port_last: 8404,
            mode: ProxyMode::Http,
            backend: "mon".into(),
            options: vec![],
            monitor_uri: Some("/alive".into()),
        });
        h.backends.push(Backend {
            name: "mon".into(),
            mode: ProxyMode::Http,
            balance: Balance::Roundrobin,
            options: vec![],
            http_check: None,
            servers: vec![],
        });
        let k = plan.keepalived.as_mut().unwrap();
        k.scripts.push(VrrpScript {
            name: "chk_http".into(),
            command: vec!["/usr/bin/curl".into(), "http://127.0.0.1:8404/alive".into()],
            interval_s: 1,
            timeout_s: Some(2),
            rise: 2,
            fall: 2,
            weight: 0,
        });
        // Not tracked by the instance yet: it does not count.
        assert_eq!(HolderVrrp::of(&plan, vip).unwrap().hung_check, None);
        let k = plan.keepalived.as_mut().unwrap();
        k.instances[0].track_scripts.push("chk_http".into());
        let v = HolderVrrp::of(&plan, vip).unwrap();
        assert_eq!(v.hung_check, Some(("chk_http".into(), 1, 2, 2)));
        assert_eq!(v.hung_bound_ms(), Some(4500));
        // Failback: only a strictly higher priority without nopreempt (or
        // from state MASTER) takes the VIP back.
        let peer = v.clone();
        assert!(!v.takes_back_from(&peer));
        let higher = HolderVrrp {
            priority: 150,
            ..v.clone()
        };
        assert!(!higher.takes_back_from(&peer));
        let preempting = HolderVrrp {
            nopreempt: false,
            ..higher.clone()
        };
        assert!(preempting.takes_back_from(&peer));
        let master = HolderVrrp {
            master: true,
            ..higher
        };
        assert!(master.takes_back_from(&peer));
    }

    #[test]
    fn scopes_pgrep_checks_to_the_node() {
        let conf = "vrrp_script chk_haproxy {\n    script \"/usr/bin/pgrep -x haproxy\"\n}\n\
                    vrrp_script chk_http {\n    script \"/usr/bin/curl http://127.0.0.1:8404/\"\n}\n";
        let t = scope_pgrep(conf, 4242);
        assert!(t.contains("script \"/usr/bin/pgrep --nslist net --ns 4242 -x haproxy\""));
        assert!(t.contains("script \"/usr/bin/curl http://127.0.0.1:8404/\""));
    }

    #[test]
    fn adapts_state_paths_only() {
        let t = adapt_paths(
            "echo 1 > /var/lib/haseed/haproxy-down; stats socket /run/haproxy/admin.sock",
            Path::new("/tmp/l/lb1"),
        );
        assert_eq!(
            t,
            "echo 1 > /tmp/l/lb1/var-lib-haseed/haproxy-down; stats socket /tmp/l/lb1/admin.sock"
        );
    }
}
