//! `haseed lab`: proves a site's failover on its own generated configuration
//! before anything is flashed. Network namespaces mirror one VIP's holders and
//! its services' backends on one L2 segment (a bridge in its own namespace),
//! plus a client; the real `haproxy` and `keepalived` run with the generated
//! files (only state paths, sockets and pid files moved into the lab's
//! directory), and the lab runs the drop-ins' `ExecStartPre=`,
//! `ExecStartPost=` and `ExecStopPost=` hooks around them as systemd would.
//!
//! It runs as root on the build host, so it never executes plan text: only
//! the default policy's typed hooks and checks, rendered again by the host
//! (`hooks.rs`, `setup.rs`), inside a sandbox (`sandbox.rs`). It must never
//! touch anything it did not create: every namespace, process and file it
//! makes is removed on success, failure and Ctrl-C (the `Lab` guard), traffic
//! stays inside its namespaces, and every loop is bounded.
//!
//! Files, by concern: `topology.rs` (what of the site is mirrored),
//! `setup.rs` + `hooks.rs` + `unit.rs` (what is run, or refused),
//! `sandbox.rs` (where it runs), `daemons.rs` (the `Lab`: namespaces,
//! backends, haproxy and keepalived), `scenarios.rs` (what is done to it),
//! `probe.rs` (the client, the backends' servers, the figures), `arp.rs`,
//! `report.rs` and `svg.rs` (what is said).

pub mod arp;
mod change;
mod daemons;
pub mod hooks;
mod probe;
mod report;
pub mod sandbox;
mod scenarios;
mod setup;
pub mod svg;
mod topology;
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
use hooks::{Check, Hook, LabHook, Refusal, ServiceHooks, Watch};
use sandbox::{NetNs, Sandbox};
use unit::Hooks;

use change::*;
pub use change::{changes_of, wanted, Change, Changed};
use daemons::*;
use probe::*;
pub use probe::{in_ns, mac_of, Probe, Sample};
pub use report::Summary;
use report::*;
use scenarios::*;
use setup::*;
use topology::*;

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
    #[arg(long, help = crate::cli::JSON_HELP)]
    pub json: bool,
    /// The objective: the longest outage a client may see, in ms [default:
    /// the VIP's `max_outage_ms` in the inventory, else 100].
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub max_outage_ms: Option<u64>,
    /// Run only this scenario (repeatable) [default: all of them]:
    /// steady, haproxy-killed, haproxy-hung, old-master-restored,
    /// backend-killed, backend-unreachable, backend-draining, backends-lost,
    /// backends-lost-everywhere, split-brain, client-stale-arp,
    /// vrrp-stall, node-stall,
    /// long-lived, keepalived-stop, keepalived-crash,
    /// change-haproxy, change-priority, change-advert (a change rolled as
    /// `haseed apply` rolls it), restart-both, kolla-restart (the haproxy
    /// change made as other tools make it: reference figures, not judged),
    /// change-site (with --change).
    #[arg(long, value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(SCENARIOS))]
    pub scenario: Vec<String>,
    /// The site after your change (same nodes, in the same order; new ones
    /// may follow): its build is rolled onto the lab's load balancers as
    /// `haseed apply` would roll it, while the client probes (scenario
    /// change-site: it runs alone, unless --scenario picks the scenarios,
    /// change-site among them or not). Passes
    /// with no failed probe and no VIP move, or, when keepalived's
    /// configuration changes, within the objective and never held twice.
    #[arg(long, value_name = "NEW_SITE")]
    pub change: Option<PathBuf>,
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
    "backend-unreachable",
    "backend-draining",
    "backends-lost",
    "backends-lost-everywhere",
    "split-brain",
    "client-stale-arp",
    "vrrp-stall",
    "node-stall",
    "long-lived",
    "keepalived-stop",
    "keepalived-crash",
    "change-haproxy",
    "change-priority",
    "change-advert",
    "restart-both",
    "kolla-restart",
    "change-site",
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
/// How long the lab lets one holder go unanswered before it looks at the
/// client's ARP entry: a holder's gratuitous ARP reaches it in milliseconds.
const STALE_ARP_GRACE: Duration = Duration::from_secs(2);

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
    /// A way other tools do it, measured for comparison and not judged (`restart-both`,
    /// `kolla-restart`).
    pub reference: bool,
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

/// The objective when neither `--max-outage-ms` nor the VIP's
/// `max_outage_ms` sets one (the target for the default policy).
pub const DEFAULT_MAX_OUTAGE_MS: u64 = 100;

/// Runs the lab on a rendered site. Needs root. `objectives`: each VIP's
/// `max_outage_ms` from the inventory, parallel to `site.vips`.
pub fn run(
    site: &Site,
    objectives: &[Option<u64>],
    plans: &[NodePlan],
    nodes: &[(String, NodeArtifacts)],
    changes: &[Changed],
    args: &LabArgs,
    out: &crate::envelope::Sink,
) -> anyhow::Result<ExitCode> {
    require_root()?;
    // curl: the probes, and the haproxy watcher the default policy runs on each LB.
    for tool in ["ip", "haproxy", "keepalived", "curl"] {
        if find_tool(tool).is_none() {
            bail!(
                "haseed lab needs {tool} on PATH (apt-get install iproute2 haproxy keepalived curl)"
            );
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
    // Nothing starts unless every hook and check is one the lab knows.
    let setups = vet(&topo, plans, nodes)?;
    // The changed builds' hooks and checks pass the same vetting before anything starts.
    let changed = changes
        .iter()
        .map(|c| {
            let setups = vet(&topo, &c.plans, &c.nodes)
                .with_context(|| format!("the site with {}", c.change.what()))?;
            Ok((c.change, setups))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut lab = Lab::new(&topo, setups)?;
    lab.changed = changed;
    lab.instances = vrrp.iter().map(|v| v.instance.clone()).collect();
    let result = (|| {
        lab.build(site, &topo)?;
        lab.settle(&topo)?;
        if let Some(found) = lab.take_settle_finding() {
            bail!("the lab could not start clean: {found}");
        }
        let mut results = Vec::new();
        for &scenario in SCENARIOS {
            if !wanted(args, scenario) {
                continue;
            }
            for trial in 1..=args.trials {
                let result = match scenario {
                    "steady" => lab.steady(&topo, trial),
                    "haproxy-killed" => lab.haproxy_killed(&topo, trial, max_outage_ms),
                    "haproxy-hung" => lab.haproxy_hung(&topo, trial, &vrrp),
                    "old-master-restored" => {
                        lab.old_master_restored(&topo, trial, &vrrp, max_outage_ms)
                    }
                    "backend-killed" => lab.backend_killed(&topo, trial, plans),
                    "backend-unreachable" => lab.backend_unreachable(&topo, trial, plans),
                    "backend-draining" => lab.backend_draining(&topo, trial, plans),
                    "backends-lost" => lab.backends_lost(&topo, trial, &vrrp, plans),
                    "backends-lost-everywhere" => {
                        lab.backends_lost_everywhere(&topo, trial, &vrrp, plans)
                    }
                    "split-brain" => lab.split_brain(&topo, trial, &vrrp),
                    "client-stale-arp" => lab.stale_arp(&topo, trial),
                    "vrrp-stall" => lab.stall(&topo, trial, false),
                    "node-stall" => lab.stall(&topo, trial, true),
                    "long-lived" => lab.long_lived(&topo, trial),
                    "keepalived-stop" => {
                        lab.keepalived_stopped(&topo, trial, max_outage_ms, false, &vrrp)
                    }
                    "keepalived-crash" => {
                        lab.keepalived_stopped(&topo, trial, max_outage_ms, true, &vrrp)
                    }
                    other => match of_scenario(other) {
                        Some(how) => {
                            lab.config_change(site, &topo, trial, how, &vrrp, max_outage_ms)
                        }
                        None => bail!("no scenario {other}"),
                    },
                };
                // An error ends the run: it says in which trial.
                let mut r =
                    result.with_context(|| format!("scenario {scenario}, trial {trial}"))?;
                lab.settle_between(&topo)
                    .with_context(|| format!("after scenario {scenario}, trial {trial}"))?;
                if let Some(found) = lab.take_settle_finding() {
                    r.passed = false;
                    r.why = Some(match r.why.take() {
                        Some(why) => format!("{why}; {found}"),
                        None => found,
                    });
                }
                results.push(r);
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
        // Fields of the envelope `cli::run` prints.
        out.fields(serde_json::json!({
            "site": site.name,
            "vip": topo.vip_name,
            "max_outage_ms": max_outage_ms,
            "passed": ok,
            "summary": summarize(&results),
            "svg": svgs,
            "trials": results,
        }))?;
        if !ok {
            out.error(crate::envelope::Notice::new(format!(
                "VIP {}: the objective ({max_outage_ms} ms) is broken: see the failed trials",
                topo.vip_name
            )));
        }
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
        assert_eq!(v.hung_bound_ms(), Some(HUNG_OBJECTIVE_MS));
        assert_eq!(v.hung_detect_ms(), Some(4000));
        assert_eq!(v.watch, None);
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
    fn a_vip_dropped_or_held_twice_while_nobody_can_serve_fails() {
        let (y, n) = ((true, true), (false, false));
        let s = |v: Vec<((bool, bool), (bool, bool))>| -> Vec<Sample> {
            v.into_iter()
                .enumerate()
                .map(|(i, (a, b))| (i as f64 * 20.0, vec![a, b]))
                .collect()
        };
        // Before the action anything goes; after it, one holder (a move to
        // the peer is allowed).
        assert_eq!(
            held_throughout(&s(vec![(n, n), (y, n), (n, y)]), 20.0),
            None
        );
        // Dropped: unheld from 40 ms on, past 100 ms; a move's own gap of
        // one or a few samples (up to 100 ms) is not.
        let dropped = held_throughout(
            &s(vec![
                (y, n),
                (y, n),
                (n, n),
                (n, n),
                (n, n),
                (n, n),
                (n, n),
                (n, n),
            ]),
            0.0,
        );
        assert!(
            dropped.as_deref()
                == Some("no holder had the VIP from 40 ms after every backend was lost, for more than 100 ms"),
            "{dropped:?}"
        );
        assert_eq!(
            held_throughout(
                &s(vec![(y, n), (y, n), (n, n), (n, n), (n, y), (n, y)]),
                0.0
            ),
            None
        );
        let twice = held_throughout(&s(vec![(y, n), (y, y)]), 0.0);
        assert!(twice.is_some_and(|w| w.starts_with("the VIP was held twice 20 ms")));
        // A move read mid-sample: the leaver in its first reading only, the
        // taker (read in between) in both. Not two holders.
        let (first, second) = ((true, false), (false, true));
        assert_eq!(held_throughout(&s(vec![(y, n), (first, y)]), 0.0), None);
        assert_eq!(held_throughout(&s(vec![(n, y), (second, y)]), 0.0), None);
    }

    #[test]
    fn reads_the_watcher_from_the_plan_only_when_tracked_and_enabled() {
        use crate::check::fixture::{lb_plan, site};
        use crate::contract::{File, VrrpTrackFile};
        let site = site();
        let vip: Ipv4Addr = "192.168.3.240".parse().unwrap();
        let mut plan = lb_plan(&site, 0);
        let exec = "/usr/local/sbin/haseed-haproxy-watch 8404 /alive \
                    /var/lib/haseed/haproxy-unhealthy 100 200 2 192.168.3.242";
        plan.files.push(File {
            path: "/etc/systemd/system/haseed-haproxy-watch.service".into(),
            mode: 0o644,
            owner: "root:root".into(),
            content: format!("[Service]\nExecStart={exec}\n"),
        });
        // Written but neither enabled nor tracked: nothing sees a hang.
        assert_eq!(HolderVrrp::of(&plan, vip).unwrap().watch, None);
        plan.services.push("haseed-haproxy-watch.service".into());
        assert_eq!(HolderVrrp::of(&plan, vip).unwrap().watch, None);
        let k = plan.keepalived.as_mut().unwrap();
        k.track_files.push(VrrpTrackFile {
            name: "unhealthy".into(),
            path: "/var/lib/haseed/haproxy-unhealthy".into(),
            weight: 0,
            init_value: Some(0),
        });
        assert_eq!(HolderVrrp::of(&plan, vip).unwrap().watch, None);
        plan.keepalived.as_mut().unwrap().instances[0]
            .track_files
            .push("unhealthy".into());
        let v = HolderVrrp::of(&plan, vip).unwrap();
        // 100 ms to the next question, two timeouts of 200 ms.
        assert_eq!(
            v.watch,
            Some((
                "haseed-haproxy-watch every 100 ms, timeout 200 ms, fall 2".into(),
                500
            ))
        );
        assert_eq!(v.hung_bound_ms(), Some(HUNG_OBJECTIVE_MS));
        assert_eq!(v.hung_detect_ms(), Some(500));
        // A weight that only lowers the priority never gives the VIP up.
        plan.keepalived.as_mut().unwrap().track_files[0].weight = -10;
        assert_eq!(HolderVrrp::of(&plan, vip).unwrap().watch, None);
    }
}
