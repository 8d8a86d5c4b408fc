//! End-to-end: `haseed lab` runs the example site's generated haproxy and
//! keepalived in network namespaces it creates, kills haproxy on the active
//! load balancer and measures what a client sees. Needs root (CI runs as
//! root); every run is bounded (a few trials, a timeout) and must leave no
//! namespace behind.

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

static LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `haseed lab ARGS --json` with a hard time bound; returns the exit
/// status success, the JSON and the child's pid (its namespaces' tag).
fn lab(args: &[&str]) -> (bool, serde_json::Value, u32) {
    // One lab at a time: labs measure milliseconds, and on a 2-core machine
    // two of them running side by side skew each other's figures.
    let _one = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let mut child = haseed()
        .arg("lab")
        .args(args)
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("haseed runs");
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            // SIGINT: the lab cleans up on Ctrl-C.
            let _ = Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status();
            let _ = child.wait();
            panic!("haseed lab ran longer than 600 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let o = child.wait_with_output().expect("output");
    let json = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("lab printed no JSON ({e}):\n{}\n{}", stdout(&o), stderr(&o)));
    (status.success(), json, pid)
}

/// No namespace of that lab run is left.
fn assert_cleaned_up(pid: u32) {
    let o = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip");
    let tag = format!("hsl{pid}-");
    let list = String::from_utf8_lossy(&o.stdout);
    assert!(
        !list.lines().any(|l| l.starts_with(&tag)),
        "left behind:\n{list}"
    );
}

/// The example site with `edit` applied, written into `tmp`; and the lab
/// run on it with `args` (a few trials, some scenarios).
fn lab_on_variant(
    tmp: &std::path::Path,
    edit: impl Fn(String) -> String,
    args: &[&str],
) -> (bool, serde_json::Value) {
    let text = std::fs::read_to_string(example("pi-k8s")).expect("example");
    let site = tmp.join("site.toml");
    std::fs::write(&site, edit(text)).expect("write");
    let mut all = vec![site.to_str().expect("utf-8")];
    all.extend_from_slice(args);
    let (ok, json, pid) = lab(&all);
    assert_cleaned_up(pid);
    (ok, json)
}

fn scenario<'j>(json: &'j serde_json::Value, name: &str) -> Vec<&'j serde_json::Value> {
    json["trials"]
        .as_array()
        .unwrap_or_else(|| panic!("the lab reported no trials: {json}"))
        .iter()
        .filter(|t| t["scenario"] == name)
        .collect()
}

#[test]
fn example_site_fails_over_in_tens_of_milliseconds() {
    let site = example("pi-k8s");
    // The default objective, 100 ms: a dying haproxy is an event
    // (ExecStopPost -> track_file -> FAULT) and a SYN sent to the old holder
    // in the VIP's move is answered or refused by its local copy of the VIP
    // instead of being lost (a lost one cost the probe its 200 ms timeout).
    let svg = tempfile::tempdir().expect("tempdir");
    // Every scenario but long-lived (a minute per trial: one trial of it
    // runs in `long_lived_connections_through_the_vip_are_answered`) and the
    // lost backends (15-20 s per trial: `lost_backends_move_the_vip_to_the_peer`).
    let scenarios: Vec<&str> = haseed::lab::SCENARIOS
        .iter()
        .copied()
        .filter(|s| !["long-lived", "backends-lost", "backends-lost-everywhere"].contains(s))
        // The config changes: `a_change_rolled_as_apply_rolls_it_loses_no_probe`.
        .filter(|s| !is_change(s))
        .collect();
    let mut args = vec![
        site.to_str().expect("utf-8"),
        "--trials",
        "3",
        "--svg",
        svg.path().to_str().expect("utf-8"),
    ];
    for s in &scenarios {
        args.extend(["--scenario", s]);
    }
    let (ok, json, pid) = lab(&args);
    assert_cleaned_up(pid);
    // --svg: one timeline per scenario trial, named in the JSON.
    let files = json["svg"].as_array().expect("svg");
    assert_eq!(files.len(), scenarios.len() * 3, "{json}");
    for name in &scenarios {
        for trial in 1..=3 {
            let path = svg.path().join(format!("{name}-{trial}.svg"));
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(text.starts_with("<svg "), "{}", path.display());
            assert!(text.trim_end().ends_with("</svg>"), "{}", path.display());
            assert!(
                text.contains(&format!("{name} trial {trial}: outage ")),
                "{}",
                path.display()
            );
            assert!(text.contains(">lb1 has the VIP<"), "{}", path.display());
        }
    }
    assert_eq!(json["max_outage_ms"], 100, "{json}");
    // Steady state: every probe answered, the VIP on exactly one holder,
    // and only that holder answers ARP for it (the other keeps the VIP on lo
    // with arp_ignore).
    for t in scenario(&json, "steady") {
        assert_eq!(t["passed"], true, "{t}");
        assert_eq!(t["failed_probes"], 0, "{t}");
        assert_eq!(
            t["arp_answered_by"].as_array().map(Vec::len),
            Some(1),
            "{t}"
        );
    }
    let killed = scenario(&json, "haproxy-killed");
    assert_eq!(killed.len(), 3, "{json}");
    let mut outages: Vec<f64> = Vec::new();
    for t in &killed {
        // The VIP left the node whose haproxy died, and was never held twice.
        assert!(t["vip_moves"].as_u64() >= Some(1), "{t}");
        assert_eq!(t["duplicate_vip_ms"], 0.0, "{t}");
        assert!(t["probes"].as_u64() > Some(50), "{t}");
        // After the move only the new holder answers ARP for the VIP.
        assert_eq!(
            t["arp_answered_by"].as_array().map(Vec::len),
            Some(1),
            "{t}"
        );
        outages.push(t["outage_ms"].as_f64().expect("outage"));
    }
    outages.sort_by(f64::total_cmp);
    assert!(outages[2] <= 100.0, "outages {outages:?}\n{json}");
    for t in &killed {
        assert_eq!(t["passed"], true, "{t}");
    }
    // A hung haproxy (SIGSTOP) is seen only by what asks haproxy's
    // monitor-uri: the watcher (every 100 ms, timeout 200 ms, fall 2), within
    // issue 19's 1.0 s (the whole-second polling check took 2.7-3.1 s:
    // `a_site_without_the_watcher_is_caught`).
    let hung = scenario(&json, "haproxy-hung");
    assert_eq!(hung.len(), 3, "{json}");
    for t in &hung {
        assert_eq!(t["passed"], true, "{t}");
        assert!(t["vip_moves"].as_u64() >= Some(1), "{t}");
        assert_eq!(t["duplicate_vip_ms"], 0.0, "{t}");
        assert!(t["outage_ms"].as_f64() <= Some(1000.0), "{t}");
        let note = t["note"].as_str().expect("note");
        assert!(note.contains("seen by haseed-haproxy-watch"), "{note}");
    }
    // The old master returns (haproxy, then keepalived restarted): with
    // nopreempt the VIP stays where it is, no move, no failed probe.
    let back = scenario(&json, "old-master-restored");
    assert_eq!(back.len(), 3, "{json}");
    for t in &back {
        assert_eq!(t["passed"], true, "{t}");
        assert_eq!(t["vip_moves"], 0, "{t}");
        assert_eq!(t["failed_probes"], 0, "{t}");
        let note = t["note"].as_str().expect("note");
        assert!(note.contains("no failback expected"), "{note}");
    }
    // keepalived ending on the active LB: the VIP moves within the
    // objective; a clean stop never leaves it held twice, a crash (parent
    // and VRRP child SIGKILLed) at most one advert (1 s) + 0.5 s thanks to
    // the generated ExecStopPost.
    for (name, dup) in [("keepalived-stop", 0.0), ("keepalived-crash", 1500.0)] {
        let trials = scenario(&json, name);
        assert_eq!(trials.len(), 3, "{json}");
        for t in trials {
            assert!(t["vip_moves"].as_u64() >= Some(1), "{t}");
            assert!(t["duplicate_vip_ms"].as_f64() <= Some(dup), "{t}");
            assert!(t["outage_ms"].as_f64() <= Some(100.0), "{t}");
            assert_eq!(t["passed"], true, "{t}");
        }
    }
    // A backend dying is hidden by haproxy's retries and redispatch; the
    // issue allows at most the check window. One probe in about one trial
    // of ten fails (a connection the backend had accepted as it died, which
    // TCP mode cannot retry), so the bound is one probe and 1 s, far inside
    // the check window, and the lab must say why it passed.
    for t in scenario(&json, "backend-killed") {
        assert!(t["failed_probes"].as_u64() <= Some(1), "{t}");
        assert!(t["outage_ms"].as_f64() <= Some(1000.0), "{t}");
        assert_eq!(t["vip_moves"], 0, "{t}");
        assert_eq!(t["passed"], true, "{t}");
        if t["failed_probes"] != 0 {
            // The check window of the example's servers: 1000 ms x fall 2.
            let note = t["note"].as_str().expect("note");
            assert!(note.contains("check window for it (2000 ms)"), "{note}");
        }
    }
    // A master stops answering (its SYNs vanish): every new connection that
    // meets it goes on to another master after one `timeout connect` (500
    // ms, redispatch on every retry), none fails, until its check marks it
    // down.
    for t in scenario(&json, "backend-unreachable") {
        assert_eq!(t["failed_probes"], 0, "{t}");
        assert!(t["max_latency_ms"].as_f64() <= Some(900.0), "{t}");
        assert_eq!(t["vip_moves"], 0, "{t}");
        assert_eq!(t["passed"], true, "{t}");
        let note = t["note"].as_str().expect("note");
        assert!(note.contains("timeout connect 500 ms"), "{note}");
    }
    // A master drains (its /readyz answers 500 while it still serves, as
    // kube-apiserver's does during --shutdown-delay-duration) for its check
    // window + 1 s, then leaves: the readyz check took it out before it
    // left, so no probe meets it.
    let draining = scenario(&json, "backend-draining");
    assert_eq!(draining.len(), 3, "{json}");
    for t in draining {
        assert_eq!(t["failed_probes"], 0, "{t}");
        assert_eq!(t["vip_moves"], 0, "{t}");
        assert_eq!(t["passed"], true, "{t}");
        let note = t["note"].as_str().expect("note");
        assert!(
            note.contains("(its check window 2000 ms + 1 s)")
                && note.contains("HTTPS GET /readyz, inter 1000 ms rise 2 fall 2"),
            "{note}"
        );
    }
    // The active holder stalls 500 ms (its VRRP child alone, then every
    // process of the node): nothing failed, so nothing moves, and clients
    // only wait (issue 19: 0.1 s adverts moved the VIP after 250 ms).
    for name in ["vrrp-stall", "node-stall"] {
        let trials = scenario(&json, name);
        assert_eq!(trials.len(), 3, "{json}");
        for t in trials {
            assert_eq!(t["vip_moves"], 0, "{t}");
            assert_eq!(t["duplicate_vip_ms"], 0.0, "{t}");
            assert_eq!(t["failed_probes"], 0, "{t}");
            assert_eq!(t["passed"], true, "{t}");
        }
    }
    // Split brain healed: one holder again and clients served within one
    // advert (1 s) + 100 ms of the link's return.
    for t in scenario(&json, "split-brain") {
        assert_eq!(t["passed"], true, "{t}");
        assert!(t["outage_ms"].as_f64() <= Some(1100.0), "{t}");
    }
    // A client still sending to the peer (it missed the holder's gratuitous
    // ARP): the peer answers for the VIP on lo and garp_master_refresh 1
    // corrects the client within the 3 s window.
    let stale = scenario(&json, "client-stale-arp");
    assert_eq!(stale.len(), 3, "{json}");
    for t in stale {
        assert_eq!(t["failed_probes"], 0, "{t}");
        assert_eq!(t["passed"], true, "{t}");
        let note = t["note"].as_str().expect("note");
        assert!(
            note.contains("3 s later: lb") && note.contains("'s MAC ("),
            "{note}"
        );
    }
    // The exit status says whether every trial met the objective.
    assert_eq!(ok, all_passed(&json), "{json}");
    assert_eq!(json["passed"], all_passed(&json), "{json}");
}

/// Whether every trial of a lab run met its objective.
fn all_passed(json: &serde_json::Value) -> bool {
    json["trials"]
        .as_array()
        .expect("trials")
        .iter()
        .all(|t| t["passed"] == true)
}

/// The config-change scenarios (issue 20).
const CHANGES: &[&str] = &[
    "change-haproxy",
    "change-priority",
    "change-advert",
    "restart-both",
    "kolla-restart",
];

/// The config-change scenarios, `change-site` (which needs `--change`) included.
fn is_change(scenario: &str) -> bool {
    CHANGES.contains(&scenario) || scenario == "change-site"
}

/// A change rolled onto the running lab as `haseed apply` rolls it (the same action plan:
/// validate, backups first, haproxy reloaded in master-worker mode, the holder handed over
/// before its keepalived changes), against the ways other tools do it.
#[test]
fn a_change_rolled_as_apply_rolls_it_loses_no_probe() {
    let site = example("pi-k8s");
    let mut args = vec![site.to_str().expect("utf-8"), "--trials", "2"];
    for s in CHANGES {
        args.extend(["--scenario", s]);
    }
    let (ok, json, pid) = lab(&args);
    assert_cleaned_up(pid);
    // haproxy.cfg only (rise +1): validated, reloaded on the backup then the holder, not one
    // probe lost, the VIP where it was.
    let trials = scenario(&json, "change-haproxy");
    assert_eq!(trials.len(), 2, "{json}");
    for t in trials {
        assert_eq!(t["failed_probes"], 0, "{t}");
        assert_eq!(t["vip_moves"], 0, "{t}");
        assert!(t["probes"].as_u64() > Some(100), "{t}");
        let note = t["note"].as_str().expect("note");
        assert!(
            note.contains(
                "validate /etc/haproxy/haproxy.cfg, swap, reload haproxy.service, health"
            ),
            "{note}"
        );
        assert!(!note.contains("restart"), "{note}");
        assert_eq!(t["passed"], true, "{t}");
    }
    // keepalived's configuration: the backup first, the holder hands the VIP over (its
    // keepalived stopped: the peer takes it at once) and starts keepalived with the new file;
    // within the objective, never held twice. The priority is in keepalived.conf only (the
    // backup reloads); the advert interval also in keepalived's drop-in (daemon-reload, and
    // the backup restarts: a drop-in's Exec lines take effect at the next start).
    for (name, backup, holder) in [
        (
            "change-priority",
            "swap, reload keepalived.service, health",
            "hand over k8s-api, swap, start keepalived.service, health",
        ),
        (
            "change-advert",
            "swap, daemon-reload, restart keepalived.service, health",
            "hand over k8s-api, swap, daemon-reload, start keepalived.service, health",
        ),
    ] {
        let trials = scenario(&json, name);
        assert_eq!(trials.len(), 2, "{json}");
        for t in trials {
            assert!(t["outage_ms"].as_f64() <= Some(100.0), "{t}");
            assert_eq!(t["duplicate_vip_ms"], 0.0, "{t}");
            assert_eq!(t["vip_moves"], 1, "{t}");
            let note = t["note"].as_str().expect("note");
            assert!(note.contains(backup) && note.contains(holder), "{note}");
            assert!(!note.contains("reload haproxy"), "{note}");
            assert_eq!(t["passed"], true, "{t}");
        }
    }
    // The same haproxy change by restarts: measured for the README, not judged. Restarting
    // both at once leaves no haproxy to answer.
    for name in ["restart-both", "kolla-restart"] {
        let trials = scenario(&json, name);
        assert_eq!(trials.len(), 2, "{json}");
        for t in trials {
            assert_eq!(t["reference"], true, "{t}");
        }
    }
    for t in scenario(&json, "restart-both") {
        assert!(t["failed_probes"].as_u64() > Some(0), "{t}");
    }
    assert_eq!(ok, all_passed(&json), "{json}");
}

/// `--change NEW_SITE`: the user's own change, planned from their file, rolled the same way.
#[test]
fn the_users_own_change_is_rolled_and_a_site_with_other_nodes_refused() {
    let site = example("pi-k8s");
    let text = std::fs::read_to_string(&site).expect("example");
    let dir = tempfile::tempdir().expect("tempdir");
    let changed = dir.path().join("site.toml");
    std::fs::write(
        &changed,
        text.replacen("[[service]]", "[[service]]\ncheck = { rise = 7 }", 1),
    )
    .expect("write");
    let (ok, json, pid) = lab(&[
        site.to_str().expect("utf-8"),
        "--change",
        changed.to_str().expect("utf-8"),
        "--trials",
        "2",
    ]);
    assert_cleaned_up(pid);
    // Only change-site runs when --change is given without --scenario.
    let trials = json["trials"].as_array().expect("trials");
    assert_eq!(trials.len(), 2, "{json}");
    for t in trials {
        assert_eq!(t["scenario"], "change-site", "{t}");
        assert_eq!(t["failed_probes"], 0, "{t}");
        assert_eq!(t["vip_moves"], 0, "{t}");
        let note = t["note"].as_str().expect("note");
        assert!(note.contains("reload haproxy.service"), "{note}");
        assert_eq!(t["passed"], true, "{t}");
    }
    assert!(ok, "{json}");
    // A site whose nodes are not the lab's: refused before anything starts.
    let renamed = dir.path().join("renamed.toml");
    std::fs::write(&renamed, text.replace("\"lb2\"", "\"lb9\"")).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_haseed"))
        .args(["lab", site.to_str().expect("utf-8"), "--change"])
        .arg(&renamed)
        .output()
        .expect("haseed runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("node lb2 is lb9 there: the changed site must keep the site's nodes"),
        "{err}"
    );
    // change-site without a changed site: said so.
    let out = Command::new(env!("CARGO_BIN_EXE_haseed"))
        .args([
            "lab",
            site.to_str().expect("utf-8"),
            "--scenario",
            "change-site",
        ])
        .output()
        .expect("haseed runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--change NEW_SITE"),
        "{err}"
    );
}

/// Long-lived connections through the VIP (a watch silent for 60 s, an API
/// call answered after 10 s) are answered: haproxy's client and server
/// timeouts are 1 h for Kubernetes holders (the reference's 3 s cut both:
/// `the_reference_polling_check_is_caught`).
#[test]
fn long_lived_connections_through_the_vip_are_answered() {
    let (ok, json, pid) = lab(&[
        example("pi-k8s").to_str().expect("utf-8"),
        "--trials",
        "1",
        "--scenario",
        "long-lived",
    ]);
    assert_cleaned_up(pid);
    let long = scenario(&json, "long-lived");
    assert_eq!(long.len(), 1, "{json}");
    let note = long[0]["note"].as_str().expect("note");
    assert!(note.contains("idle 60 s then asked: answered at"), "{note}");
    assert!(note.contains("answer after 10 s: answered at"), "{note}");
    assert_eq!(long[0]["failed_probes"], 0, "{json}");
    assert_eq!(long[0]["passed"], true, "{json}");
    assert!(ok, "{json}");
}

/// Every backend unreachable from the active load balancer only: haproxy
/// marks its servers down within its check window (inter 3000 ms x fall 3),
/// its monitor answers 503, and the watcher, seeing the peer's monitor
/// answer 200, gives the VIP to the peer, within the window + the watcher's
/// detection + 0.5 s (10.0 s with the example's checks). When every load
/// balancer lost them, nobody can serve and the VIP stays held.
#[test]
fn lost_backends_move_the_vip_to_the_peer() {
    let (ok, json, pid) = lab(&[
        example("pi-k8s").to_str().expect("utf-8"),
        "--trials",
        "2",
        "--scenario",
        "backends-lost",
        "--scenario",
        "backends-lost-everywhere",
    ]);
    assert_cleaned_up(pid);
    let lost = scenario(&json, "backends-lost");
    assert_eq!(lost.len(), 2, "{json}");
    for t in &lost {
        assert_eq!(t["passed"], true, "{t}");
        assert!(t["vip_moves"].as_u64() >= Some(1), "{t}");
        assert_eq!(t["duplicate_vip_ms"], 0.0, "{t}");
        // The readyz check's window: inter 1000 ms x fall 2.
        assert!(t["outage_ms"].as_f64() <= Some(3_000.0), "{t}");
        let note = t["note"].as_str().expect("note");
        assert!(
            note.contains("bound 3000 ms: haproxy's check window 2000 ms + haseed-haproxy-watch"),
            "{note}"
        );
    }
    // Held at every sample, never twice (one move to a peer whose haproxy
    // still had a server a moment longer is allowed).
    let everywhere = scenario(&json, "backends-lost-everywhere");
    assert_eq!(everywhere.len(), 2, "{json}");
    for t in &everywhere {
        assert_eq!(t["passed"], true, "{t}");
        assert_eq!(t["duplicate_vip_ms"], 0.0, "{t}");
        assert!(t["vip_moves"].as_u64() <= Some(1), "{t}");
    }
    assert!(ok, "{json}");
}

/// `haproxy_watch = false`: keepalived's whole-second HTTP check of the
/// monitor-uri is all that sees a hung haproxy (2-4 s, over the 1.0 s
/// objective), and nothing gives the VIP up when the active load balancer
/// loses every backend; the lab fails both and says why.
#[test]
fn a_site_without_the_watcher_is_caught() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ok, json) = lab_on_variant(
        tmp.path(),
        |text| format!("{text}\n[default_policy]\nhaproxy_watch = false\n"),
        &[
            "--trials",
            "1",
            "--scenario",
            "haproxy-hung",
            "--scenario",
            "backends-lost",
        ],
    );
    assert!(!ok, "{json}");
    let hung = scenario(&json, "haproxy-hung");
    assert_eq!(hung[0]["passed"], false, "{json}");
    assert!(hung[0]["outage_ms"].as_f64() > Some(1000.0), "{json}");
    let why = hung[0]["why"].as_str().expect("why");
    assert!(
        why.starts_with("outage ") && why.ends_with("> 1000 ms"),
        "{why}"
    );
    let note = hung[0]["note"].as_str().expect("note");
    assert!(note.contains("seen by chk_haproxy_http"), "{note}");
    let lost = scenario(&json, "backends-lost");
    assert_eq!(lost[0]["passed"], false, "{json}");
    assert_eq!(lost[0]["vip_moves"], 0, "{json}");
    let why = lost[0]["why"].as_str().expect("why");
    assert!(why.contains("nothing gives the VIP up"), "{why}");
}

/// Sub-second adverts (what the default policy shipped before issue 19):
/// the peer declares a holder dead after three missed adverts, so a 500 ms
/// stall of the VRRP process moves the VIP (and, the stalled holder having
/// the higher address, moves it back): the lab fails the trial and says so.
#[test]
fn a_stall_moves_the_vip_when_adverts_are_sub_second() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ok, json) = lab_on_variant(
        tmp.path(),
        |text| format!("{text}\n[default_policy]\nadvert_int_ms = 100\n"),
        &["--trials", "2", "--scenario", "vrrp-stall"],
    );
    assert!(!ok, "{json}");
    let stalls = scenario(&json, "vrrp-stall");
    assert_eq!(stalls.len(), 2, "{json}");
    // Every trial fails; at least one shows the cause itself. The sampler
    // reads each holder's addresses with `ip` (four processes a sample), so
    // on a loaded 2-core machine a ~150 ms double hold can fall between two
    // samples while the reset it causes still shows as a failed probe (CI,
    // stop 27: "1 failed probes").
    let mut caused = 0;
    for t in stalls {
        assert_eq!(t["passed"], false, "{t}");
        let why = t["why"].as_str().expect("why");
        if why.contains("the VIP moved") || why.contains("VIP held twice") {
            caused += 1;
        }
    }
    assert!(
        caused >= 1,
        "no trial saw the VIP move or held twice: {json}"
    );
}

/// A site plugin that removes keepalived's tracking (plugins/drop-tracking:
/// every tracked check and track file gone) still gives a valid plan; the
/// lab shows that haproxy's death then never moves the VIP.
#[test]
fn a_plugin_that_removes_the_tracking_is_caught() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let entry = plugin_entry(&plugin("drop_tracking.wasm"), None);
    let (ok, json) = lab_on_variant(
        tmp.path(),
        |text| format!("{text}{entry}"),
        &["--trials", "1", "--scenario", "haproxy-killed"],
    );
    assert!(!ok, "{json}");
    assert_eq!(json["passed"], false, "{json}");
    let killed = scenario(&json, "haproxy-killed");
    assert_eq!(killed.len(), 1, "{json}");
    assert_eq!(killed[0]["passed"], false, "{json}");
    assert_eq!(killed[0]["vip_moves"], 0, "{json}");
    let why = killed[0]["why"].as_str().expect("why");
    assert!(
        why.contains("stayed on") && why.contains("whose haproxy is dead"),
        "{why}"
    );
}

/// Without the event-driven tracking (the reference's polling check, scoped
/// to the node's namespace by the lab), haproxy dying moves the VIP only
/// after the check's fall count (~3 s), far over the objective, and the lab
/// says so.
#[test]
fn the_reference_polling_check_is_caught() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Not the lost backends: nothing sees them without the watcher
    // (`a_site_without_the_watcher_is_caught`), and they take 35 s.
    let mut args = vec!["--trials", "1"];
    for s in haseed::lab::SCENARIOS {
        if !s.starts_with("backends-lost") && !is_change(s) {
            args.extend(["--scenario", s]);
        }
    }
    let (ok, json) = lab_on_variant(
        tmp.path(),
        |text| format!("{text}\n[default_policy]\nfailover = false\n"),
        &args,
    );
    assert!(!ok, "{json}");
    let killed = scenario(&json, "haproxy-killed");
    assert_eq!(killed[0]["passed"], false, "{json}");
    let why = killed[0]["why"].as_str().expect("why");
    assert!(why.contains("stayed on") || why.contains("outage"), "{why}");
    assert!(killed[0]["outage_ms"].as_f64() > Some(1000.0), "{json}");
    // Nor is there a check that sees a hung haproxy.
    let hung = scenario(&json, "haproxy-hung");
    assert_eq!(hung[0]["passed"], false, "{json}");
    let why = hung[0]["why"].as_str().expect("why");
    assert!(why.contains("no tracked check"), "{why}");
    // The reference's `timeout client 3000ms` closes a silent connection
    // (a watch) and a request waiting for its answer after 3 s.
    let long = scenario(&json, "long-lived");
    assert_eq!(long[0]["passed"], false, "{json}");
    let note = long[0]["note"].as_str().expect("note");
    for cut in [
        "idle 60 s then asked: closed by the load balancer after 3.",
        "answer after 10 s: closed by the load balancer after 3.",
    ] {
        assert!(note.contains(cut), "{note}");
    }
    // A silent master: `timeout connect 3000ms` and redispatch on the last
    // retry only keep new connections waiting on it (7 of 31 probes past
    // 1.5 s when measured).
    // Nor does its TCP check see a draining master.
    // No gratuitous ARP after the move and no VIP on the peer's lo: a client
    // that missed the holder's announcement stays cut off until its entry
    // ages out (15-45 s); the lab says so, clears the entry, and goes on.
    let stale = scenario(&json, "client-stale-arp");
    assert_eq!(stale[0]["passed"], false, "{json}");
    let why = stale[0]["why"].as_str().expect("why");
    assert!(
        why.contains("failed probes while the client sent to"),
        "{why}"
    );
    assert!(why.contains("sent no gratuitous ARP"), "{why}");
    assert!(why.contains("the lab deleted the entry"), "{why}");
    let draining = scenario(&json, "backend-draining");
    assert_eq!(draining[0]["passed"], false, "{json}");
    let silent = scenario(&json, "backend-unreachable");
    assert_eq!(silent[0]["passed"], false, "{json}");
    let why = silent[0]["why"].as_str().expect("why");
    assert!(
        why.contains("probes failed while backend master1 did not answer")
            || why.contains("more than timeout connect 3000 ms"),
        "{why}"
    );
}

/// A TCP check of the API servers (`apiserver_check = "tcp"`, the
/// reference's) cannot see a master whose `/readyz` fails while it still
/// accepts connections: when it leaves after its drain, haproxy still sends
/// it new connections, which wait out `timeout connect` and fail.
#[test]
fn a_tcp_check_of_the_api_servers_misses_a_drain() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ok, json) = lab_on_variant(
        tmp.path(),
        |text| format!("{text}\n[default_policy]\napiserver_check = \"tcp\"\n"),
        &["--trials", "1", "--scenario", "backend-draining"],
    );
    assert!(!ok, "{json}");
    let draining = scenario(&json, "backend-draining");
    assert_eq!(draining.len(), 1, "{json}");
    let t = draining[0];
    assert_eq!(t["passed"], false, "{t}");
    assert!(t["failed_probes"].as_u64() >= Some(1), "{t}");
    let why = t["why"].as_str().expect("why");
    assert!(
        why.contains("probes failed when backend master1 left after draining for 10000 ms")
            && why.contains("TCP connect, inter 3000 ms rise 30 fall 3"),
        "{why}"
    );
}

/// A site whose VIP has a preferred master preempts: when the old master
/// returns the VIP goes back to it, and the lab reports the move (the
/// generated configuration asks for it) instead of failing the trial for it.
#[test]
fn a_preempting_site_gets_its_failback_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // A preferred master, and the VIP's own objective (no --max-outage-ms).
    let (_, json) = lab_on_variant(
        tmp.path(),
        |text| {
            let text = text.replacen(
                "network = \"lan\"\n",
                "network = \"lan\"\nmaster = \"lb1\"\nmax_outage_ms = 300\n",
                1,
            );
            assert!(text.contains("master = \"lb1\""));
            text
        },
        &["--trials", "1", "--scenario", "old-master-restored"],
    );
    assert_eq!(
        json["max_outage_ms"], 300,
        "the VIP's max_outage_ms: {json}"
    );
    let back = scenario(&json, "old-master-restored");
    assert_eq!(back.len(), 1, "{json}");
    assert_eq!(scenario(&json, "haproxy-killed").len(), 0, "{json}");
    let note = back[0]["note"].as_str().expect("note");
    assert!(note.contains("the site preempts"), "{note}");
    assert!(note.contains("state MASTER"), "{note}");
    assert!(back[0]["vip_moves"].as_u64() >= Some(1), "{json}");
    // The move itself is no failure; the failback is a VIP move like any
    // other, so its outage is still judged, against the VIP's 300 ms.
    if let Some(why) = back[0]["why"].as_str() {
        assert!(why.starts_with("outage "), "{json}");
        assert!(why.ends_with("> 300 ms"), "{json}");
    }
}

/// Two namespaces the test creates (and removes) joined by a veth pair.
struct Pair {
    a: String,
    b: String,
}

impl Pair {
    fn new() -> Pair {
        let tag = std::process::id();
        let (a, b) = (format!("hsarp{tag}-a"), format!("hsarp{tag}-b"));
        let pair = Pair { a, b };
        let ip = |args: &[&str]| {
            let o = Command::new("ip").args(args).output().expect("ip");
            assert!(o.status.success(), "ip {args:?}: {}", stderr(&o));
        };
        ip(&["netns", "add", &pair.a]);
        ip(&["netns", "add", &pair.b]);
        ip(&[
            "-n", &pair.a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns",
            &pair.b,
        ]);
        for (ns, dev, addr) in [
            (&pair.a, "va", "10.250.0.1/24"),
            (&pair.b, "vb", "10.250.0.2/24"),
        ] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        pair
    }

    fn run(&self, ns: &str, args: &[&str]) {
        let o = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .output()
            .expect("ip netns exec");
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    }

    /// Who answers ARP for `vip`, asked from a's side.
    fn who_has(&self, vip: &str) -> Vec<String> {
        let vip = vip.parse().expect("address");
        haseed::lab::in_ns(&self.a, move || {
            haseed::lab::arp::who_has(
                "va",
                "10.250.0.1".parse().expect("address"),
                vip,
                Duration::from_millis(200),
            )
        })
        .expect("entering the namespace")
        .expect("ARP request")
        .iter()
        .map(haseed::lab::arp::mac_string)
        .collect()
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// What the lab's ARP check and the default policy's local VIP rest on: a
/// Linux node answers ARP for an address it has on lo (so the lab's check
/// can fail), unless `arp_ignore=1` is set on the asked interface; and it
/// answers once the address is on that interface (the holder).
#[test]
fn a_vip_on_lo_is_answered_in_arp_unless_ignored() {
    assert!(
        is_root(),
        "this test needs root (network namespaces); CI runs as root"
    );
    let pair = Pair::new();
    let b = haseed::lab::mac_of(&pair.b, "vb").expect("vb's MAC");
    pair.run(
        &pair.b,
        &["ip", "addr", "add", "10.250.0.100/32", "dev", "lo"],
    );
    assert_eq!(
        pair.who_has("10.250.0.100"),
        vec![b.clone()],
        "arp_ignore=0"
    );
    // What the generated keepalived drop-in runs on a load balancer.
    pair.run(
        &pair.b,
        &[
            "sysctl",
            "-q",
            "-w",
            "net/ipv4/conf/vb/arp_ignore=1",
            "net/ipv4/conf/vb/arp_announce=2",
        ],
    );
    assert_eq!(
        pair.who_has("10.250.0.100"),
        Vec::<String>::new(),
        "arp_ignore=1"
    );
    // Holding the VIP on the interface (keepalived MASTER) answers again.
    pair.run(
        &pair.b,
        &["ip", "addr", "add", "10.250.0.100/24", "dev", "vb"],
    );
    assert_eq!(
        pair.who_has("10.250.0.100"),
        vec![b],
        "VIP on the interface"
    );
    // An address nobody has: no answer.
    assert!(pair.who_has("10.250.0.101").is_empty());
}

#[test]
fn lab_needs_root_and_says_so() {
    let site = example("pi-k8s");
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_haseed"))
        .args(["lab", site.to_str().expect("utf-8")])
        .output()
        .expect("setpriv runs");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("haseed lab needs root"),
        "{}",
        stderr(&o)
    );
}

/// curl asks haproxy's monitor URI for the probes and the LBs' watcher: without it on PATH the
/// lab stops before it creates anything, and says which package. (haproxy, keepalived and ip
/// are also looked for in /usr/sbin and /sbin; curl, in /usr/bin, is not.)
#[test]
fn lab_needs_curl_and_says_so() {
    let site = example("pi-k8s");
    let empty = tempfile::tempdir().expect("tempdir");
    let o = Command::new(env!("CARGO_BIN_EXE_haseed"))
        .args(["--quiet", "lab", site.to_str().expect("utf-8")])
        .env("PATH", empty.path())
        .output()
        .expect("haseed runs");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("haseed lab needs curl on PATH (apt-get install")
            && stderr(&o).contains("curl)"),
        "{}",
        stderr(&o)
    );
}

/// The adversarial review's attack: a plugin adds a `haproxy.service`
/// drop-in and a tracked keepalived script (plugins/hostile/lab-escape), a
/// valid plan that `haseed lab` would have run as root on this machine. The
/// lab refuses the site before it starts anything, names each command, and
/// nothing the plugin wrote ran.
#[test]
fn a_plugin_that_adds_hooks_and_checks_is_refused_and_nothing_runs() {
    let _one = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().expect("tempdir");
    let markers = tmp.path().join("markers");
    std::fs::create_dir(&markers).expect("markers");
    let entry = plugin_entry(
        &plugin("hostile_lab_escape.wasm"),
        Some(&format!("{{ marker_dir = \"{}\" }}", markers.display())),
    );
    let text = std::fs::read_to_string(example("pi-k8s")).expect("example");
    let site = tmp.path().join("site.toml");
    std::fs::write(&site, format!("{text}{entry}")).expect("write");
    // The plan itself is valid: the build accepts it.
    let built = haseed()
        .args(["plan", site.to_str().expect("utf-8")])
        .output()
        .expect("haseed runs");
    assert!(built.status.success(), "{}", stderr(&built));
    let child = haseed()
        .args(["lab", site.to_str().expect("utf-8"), "--trials", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("haseed runs");
    let pid = child.id();
    let o = child.wait_with_output().expect("output");
    let err = stderr(&o);
    assert!(!o.status.success(), "the lab ran the site:\n{}", stdout(&o));
    for want in [
        "haseed lab refuses this site",
        "node lb1: /etc/systemd/system/haproxy.service.d/60-escape.conf line 2 ExecStartPost=",
        "node lb2: /etc/systemd/system/haproxy.service.d/60-escape.conf line 2 ExecStartPost=",
        "cat /etc/shadow",
        "node lb1: keepalived vrrp_script escape",
        "/usr/bin/touch",
        "Nothing was started",
    ] {
        assert!(err.contains(want), "no {want:?} in:\n{err}");
    }
    let left: Vec<_> = std::fs::read_dir(&markers)
        .expect("markers")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "the plugin's commands ran: {left:?}");
    assert_cleaned_up(pid);
}

/// The lab's second wall (builder/src/lab/sandbox.rs), tested on its own:
/// whatever runs in the sandbox sees no private file of the host, cannot
/// write the host's files or kernel settings, cannot reach the host's root
/// through /proc, keeps only the capabilities VRRP and haproxy need; it can
/// write the lab's directory and its own network namespace's settings. Each
/// probe also runs outside the sandbox, where it must give the opposite
/// answer, so a probe that cannot fail proves nothing.
#[test]
fn the_lab_sandbox_hides_the_host_and_keeps_it_read_only() {
    use haseed::lab::sandbox::{NetNs, Sandbox, KEEP};
    let ns = format!("hsl-sbx-{}", std::process::id());
    let ok = |c: &mut Command| c.status().expect("runs").success();
    assert!(ok(Command::new("ip").args(["netns", "add", &ns])));
    struct Gone(String);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = Command::new("ip")
                .args(["netns", "delete", &self.0])
                .status();
        }
    }
    let _gone = Gone(ns.clone());
    let tmp = tempfile::tempdir().expect("tempdir");
    let sandbox = Sandbox::new(tmp.path()).expect("sandbox");
    let net = NetNs::open(&ns).expect("netns");
    let inside = |script: &str| {
        let o = sandbox
            .command(&net, "/bin/sh", &["-c", script])
            .output()
            .expect("runs in the sandbox");
        (o.status.success(), stdout(&o) + &stderr(&o))
    };
    let outside = |script: &str| {
        Command::new("/bin/sh")
            .args(["-c", script])
            .output()
            .expect("runs")
            .status
            .success()
    };
    let private = format!("/tmp/haseed-sandbox-private-{}", std::process::id());
    let host_file = tempfile::NamedTempFile::new().expect("a file in the host's /tmp");
    let host_file = host_file.path();
    // A root process of the host with every capability this test has.
    let mut host_process = Command::new("sleep").arg("60").spawn().expect("sleep");
    for (what, probe) in [
        (
            "read /etc/shadow",
            "cat /etc/shadow > /dev/null".to_string(),
        ),
        ("see /root", "test -e /root".to_string()),
        ("write under /usr", "test -w /usr/bin".to_string()),
        ("write /etc", "test -w /etc/passwd".to_string()),
        (
            "write the kernel's settings",
            "test -w /proc/sys/kernel/core_pattern".to_string(),
        ),
        (
            "reach the host's root through a root process's /proc/PID/root",
            format!("ls /proc/{}/root/ > /dev/null", host_process.id()),
        ),
        (
            "see the host's /tmp",
            format!("test -e {}", host_file.display()),
        ),
    ] {
        assert!(
            outside(&probe),
            "the probe for {what:?} fails outside the sandbox: {probe}"
        );
        let (ran, out) = inside(&probe);
        assert!(
            !ran,
            "inside the sandbox a process could {what}: {probe}\n{out}"
        );
    }
    // What it may do: write the lab's directory and its own namespace's
    // network settings; its /tmp is its own.
    let (ran, out) = inside(&format!(
        "echo ok > {dir}/w && echo 1 > /proc/sys/net/ipv4/conf/lo/arp_ignore && echo x > {private}",
        dir = tmp.path().display()
    ));
    assert!(ran, "{out}");
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("w")).expect("written"),
        "ok\n"
    );
    assert!(
        !std::path::Path::new(&private).exists(),
        "{private} reached the host"
    );
    let o = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            "cat",
            "/proc/sys/net/ipv4/conf/lo/arp_ignore",
        ])
        .output()
        .expect("ip");
    assert_eq!(stdout(&o).trim(), "1");
    // Capabilities: only KEEP (of what this process has), no new privileges.
    let (ran, status) = inside("cat /proc/self/status");
    assert!(ran, "{status}");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {name} in {status}"))
            .to_string()
    };
    let eff = u64::from_str_radix(&field("CapEff:"), 16).expect("hex");
    let keep = KEEP.iter().fold(0u64, |m, c| m | 1 << c);
    assert_eq!(eff & !keep, 0, "capabilities beyond KEEP: {eff:x}");
    assert_ne!(eff & (1 << 12), 0, "CAP_NET_ADMIN was dropped: {eff:x}");
    assert_eq!(field("NoNewPrivs:"), "1");
    assert_eq!(
        u64::from_str_radix(&field("CapBnd:"), 16).expect("hex") & !keep,
        0
    );
    let _ = host_process.kill();
    let _ = host_process.wait();
}
