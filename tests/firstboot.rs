//! First boot, proven (issue 11): the example site's load balancer seed boots
//! a real Debian trixie under qemu, and the node becomes what the plan says.
//!
//! `tests/firstboot/make-base.sh` builds (once, cached outside the clone) a
//! trixie base with systemd, a kernel, cloud-init and netplan, but without
//! haproxy, keepalived or curl: their .debs sit in an offline APT repository
//! in the base, so the seed's `packages:` installs them on first boot.
//! `tests/firstboot/boot.sh` boots it with the NoCloud `cidata` disk made by
//! `haseed seed`, the NIC on a tap in a bridge inside a namespace it creates,
//! under a hard time limit. A unit baked into the base (never into the seed)
//! waits for cloud-init, writes a report to the second serial port and powers
//! off. This test checks that report against `haseed build`'s output.
//!
//! Needs root (CI runs as root). Under TCG (KVM cannot run the guest kernel on
//! these machines) the boot takes about five minutes.

mod common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What a node's build output says first boot must produce.
struct Expect {
    /// path on the node -> (sha256, mode "644", owner "root:root")
    files: BTreeMap<String, (String, String, String)>,
    packages: Vec<String>,
    services: Vec<String>,
    interface: String,
    address: String,
    /// The node's default route with its address's prefix: the test bridge's address.
    gateway: String,
    vips: Vec<String>,
    /// Addresses the keepalived drop-in keeps on lo (`X/32`).
    local_vips: Vec<String>,
    dropins: Vec<String>,
}

impl Expect {
    /// Reads `DIR/NODE/`: the file tree, user-data (packages, modes, owners,
    /// services enabled by runcmd) and network-config (the static address).
    fn of(node_dir: &Path) -> Expect {
        let user_data = std::fs::read_to_string(node_dir.join("user-data")).expect("user-data");
        let network = std::fs::read_to_string(node_dir.join("network-config")).expect("network");
        let json = |s: &str| -> serde_json::Value {
            serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("{s}: {e}"))
        };

        let mut perms: BTreeMap<String, (String, String)> = BTreeMap::new();
        let mut packages = Vec::new();
        let mut services = Vec::new();
        let mut path: Option<String> = None;
        let mut owner = String::new();
        for line in user_data.lines() {
            let t = line.trim_start();
            if let Some(v) = line.strip_prefix("packages: ") {
                packages = serde_json::from_value(json(v)).expect("packages list");
            } else if let Some(v) = t.strip_prefix("- path: ") {
                path = Some(json(v).as_str().expect("path").to_string());
            } else if let Some(v) = t.strip_prefix("owner: ") {
                owner = json(v).as_str().expect("owner").to_string();
            } else if let Some(v) = t.strip_prefix("permissions: ") {
                let mode = json(v)
                    .as_str()
                    .expect("mode")
                    .trim_start_matches('0')
                    .to_string();
                let p = path.take().expect("permissions after path");
                perms.insert(p, (mode, std::mem::take(&mut owner)));
            } else if let Some(v) = t.strip_prefix("- [\"systemctl\",\"--no-reload\",\"enable\",") {
                let cmd: Vec<String> = serde_json::from_value(json(&format!(
                    "[\"systemctl\",\"--no-reload\",\"enable\",{v}"
                )))
                .expect("runcmd");
                services.push(cmd[3].clone());
            }
        }

        let mut files = BTreeMap::new();
        let root = node_dir.join("files");
        for (rel, bytes) in tree(&root) {
            let on_node = format!("/{rel}");
            let (mode, owner) = perms
                .get(&on_node)
                .cloned()
                .unwrap_or_else(|| panic!("{on_node} is in files/ but not in user-data"));
            let sha = sha256_file(&root.join(&rel));
            assert!(!bytes.is_empty(), "{on_node} is empty");
            files.insert(on_node, (sha, mode, owner));
        }
        let dropins = files
            .keys()
            .filter(|p| p.starts_with("/etc/systemd/system/") && p.contains(".service.d/"))
            .cloned()
            .collect();

        // network-config: the first ethernet's name and first address.
        let mut interface = String::new();
        let mut address = String::new();
        let mut via = String::new();
        let mut in_ethernets = false;
        for line in network.lines() {
            let t = line.trim();
            if t == "ethernets:" {
                in_ethernets = true;
            } else if in_ethernets && interface.is_empty() && t.ends_with(':') {
                interface = json(t.trim_end_matches(':'))
                    .as_str()
                    .unwrap_or(t)
                    .to_string();
            } else if let Some(v) = t.strip_prefix("via: ") {
                if via.is_empty() {
                    via = json(v).as_str().expect("via").to_string();
                }
            } else if let Some(v) = t.strip_prefix("addresses: ") {
                if address.is_empty() && v.contains('/') {
                    let list: Vec<String> = serde_json::from_value(json(v)).expect("addresses");
                    address = list[0].clone();
                }
            }
        }
        assert!(
            !interface.is_empty() && !address.is_empty() && !via.is_empty(),
            "network-config: {network}"
        );
        let gateway = format!("{via}/{}", address.split('/').nth(1).expect("a prefix"));

        // The VIPs this node holds: keepalived.conf's virtual_ipaddress blocks.
        let mut vips = Vec::new();
        if let Ok(conf) = std::fs::read_to_string(root.join("etc/keepalived/keepalived.conf")) {
            let mut inside = false;
            for line in conf.lines() {
                let t = line.trim();
                if t.starts_with("virtual_ipaddress") {
                    inside = true;
                } else if inside && t == "}" {
                    inside = false;
                } else if inside {
                    vips.push(t.split_whitespace().next().unwrap().to_string());
                }
            }
        }
        // The VIPs the keepalived drop-in's ExecStartPre keeps on lo.
        let local_vips = std::fs::read_to_string(
            root.join("etc/systemd/system/keepalived.service.d/50-haseed-failover.conf"),
        )
        .unwrap_or_default()
        .split("ip addr replace ")
        .skip(1)
        .filter_map(|rest| rest.split_once(" dev lo"))
        .map(|(a, _)| a.to_string())
        .collect();
        Expect {
            files,
            packages,
            services,
            interface,
            address,
            gateway,
            vips,
            local_vips,
            dropins,
        }
    }
}

/// The report's lines, by kind.
struct Report {
    lines: Vec<(String, String)>,
    status_json: Option<serde_json::Value>,
}

impl Report {
    fn parse(text: &str) -> Result<Report, String> {
        let begin = text
            .find("HASEED-REPORT-BEGIN")
            .ok_or("no report on the VM's second serial port (the report unit never ran)")?;
        let body = &text[begin..];
        if !body.contains("HASEED-REPORT-END") {
            return Err("the report is cut short (the VM stopped while reporting)".into());
        }
        let mut lines = Vec::new();
        let mut json = String::new();
        let mut in_json = false;
        for line in body.lines().skip(1) {
            let line = line.trim_end_matches('\r');
            match line {
                "HASEED-REPORT-END" => break,
                "cloud-init-status-json-begin" => in_json = true,
                "cloud-init-status-json-end" => in_json = false,
                _ if in_json => json.push_str(line),
                _ => {
                    let (k, v) = line.split_once(' ').unwrap_or((line, ""));
                    lines.push((k.to_string(), v.to_string()));
                }
            }
        }
        Ok(Report {
            lines,
            status_json: serde_json::from_str(&json).ok(),
        })
    }

    fn all<'r>(&'r self, kind: &'r str) -> impl Iterator<Item = &'r str> + 'r {
        self.lines
            .iter()
            .filter(move |(k, _)| k == kind)
            .map(|(_, v)| v.as_str())
    }
}

/// Every way the node differs from its plan, as sentences; empty when it
/// came up as planned.
fn problems(report: &Report, expect: &Expect) -> Vec<String> {
    let mut out = Vec::new();

    match &report.status_json {
        None => out.push("cloud-init status --format json printed no JSON".into()),
        Some(s) => {
            if s["status"] != "done" {
                out.push(format!("cloud-init status is {}, not done", s["status"]));
            }
            let errors = s["errors"].as_array().map(|a| a.len()).unwrap_or(0);
            if errors > 0 {
                out.push(format!("cloud-init reported errors: {}", s["errors"]));
            }
            // Recoverable errors are cloud-init's warnings, by level.
            if let Some(levels) = s["recoverable_errors"].as_object() {
                for (level, msgs) in levels {
                    out.push(format!("cloud-init {level}: {msgs}"));
                }
            }
        }
    }
    if let Some(code) = report.all("cloud-init-exit").next() {
        if code != "0" {
            out.push(format!("cloud-init status --wait exited {code}"));
        }
    }

    for p in &expect.packages {
        let installed = report.all("package").any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.first() == Some(&p.as_str()) && f.last() == Some(&"installed")
        });
        if !installed {
            out.push(format!("package {p} is not installed"));
        }
    }
    for s in &expect.services {
        let line = report
            .all("service")
            .find(|l| l.split(' ').next() == Some(s));
        match line {
            Some(l) if l == format!("{s} enabled active") => {}
            Some(l) => out.push(format!("service {s}: {}", &l[s.len()..].trim())),
            None => out.push(format!("service {s} is not in the report")),
        }
    }
    for d in &expect.dropins {
        let unit = d
            .trim_start_matches("/etc/systemd/system/")
            .split(".service.d/")
            .next()
            .unwrap();
        let in_effect = report
            .all("dropins")
            .filter(|l| l.split(' ').next() == Some(unit))
            .any(|l| l.split_whitespace().any(|p| p == d));
        if !in_effect {
            out.push(format!("drop-in {d} is not in effect for {unit}.service"));
        }
    }
    // haproxy's drop-in writes 0 to its track file when haproxy has started.
    if expect
        .dropins
        .iter()
        .any(|d| d.contains("haproxy.service.d"))
    {
        match report.all("track-file").next() {
            Some("0") => {}
            other => out.push(format!(
                "/var/lib/haseed/haproxy-down holds {other:?}, not 0 (haproxy's ExecStartPost did not run)"
            )),
        }
    }

    let addrs: BTreeSet<(String, String)> = report
        .all("addr")
        .filter_map(|l| l.split_once(' '))
        .map(|(i, a)| (i.to_string(), a.to_string()))
        .collect();
    let has = |a: &str| addrs.contains(&(expect.interface.clone(), a.to_string()));
    if !has(&expect.address) {
        out.push(format!(
            "{} does not carry {} (addresses: {addrs:?})",
            expect.interface, expect.address
        ));
    }
    for v in &expect.vips {
        if !has(v) {
            out.push(format!("the VIP {v} is not on {}", expect.interface));
        }
    }
    for v in &expect.local_vips {
        if !addrs.contains(&("lo".to_string(), v.clone())) {
            out.push(format!(
                "the VIP {v} is not on lo (keepalived's ExecStartPre with its sysctls did not run or failed)"
            ));
        }
    }

    let sha: BTreeMap<&str, &str> = report
        .all("sha256")
        .filter_map(|l| l.split_once(' '))
        .map(|(h, p)| (p, h))
        .collect();
    let modes: BTreeMap<&str, (&str, &str)> = report
        .all("mode")
        .filter_map(|l| {
            let mut f = l.splitn(3, ' ');
            Some((f.next()?, f.next()?, f.next()?))
        })
        .map(|(m, o, p)| (p, (m, o)))
        .collect();
    for (path, (hash, mode, owner)) in &expect.files {
        match sha.get(path.as_str()) {
            None => out.push(format!("{path} is missing on the node")),
            Some(h) if h != hash => out.push(format!(
                "{path} differs from the build's files/ (a package overwrote it?)"
            )),
            _ => {}
        }
        if let Some((m, o)) = modes.get(path.as_str()) {
            if m != mode || o != owner {
                out.push(format!("{path} is {m} {o}, the plan says {mode} {owner}"));
            }
        }
    }
    for u in report.all("failed-unit") {
        out.push(format!("unit {u} failed"));
    }
    out
}

/// The lines that explain a failed boot: cloud-init's warnings and errors, the
/// journal of a service that is not active, and the end of the console.
fn diagnosis(report: Option<&Report>, work: &Path) -> String {
    let mut d = String::new();
    if let Some(r) = report {
        for kind in ["log", "journal"] {
            for l in r.all(kind) {
                d.push_str(&format!("  {kind}: {l}\n"));
            }
        }
    }
    let console = std::fs::read_to_string(work.join("console.log")).unwrap_or_default();
    let tail: Vec<&str> = console.lines().rev().take(25).collect();
    d.push_str("  console (last lines):\n");
    for l in tail.iter().rev() {
        d.push_str(&format!("    {l}\n"));
    }
    d
}

fn script(name: &str) -> PathBuf {
    repo_root().join("tests/firstboot").join(name)
}

#[test]
fn the_example_lb_boots_and_becomes_its_plan() {
    assert!(
        is_root(),
        "the first-boot test needs root (network namespace, tap, qemu); CI runs as root"
    );
    let base = Command::new("sh")
        .arg(script("make-base.sh"))
        .output()
        .expect("make-base.sh runs");
    assert!(
        base.status.success(),
        "make-base.sh failed:\n{}",
        stderr(&base)
    );
    let base = stdout(&base).lines().last().unwrap().trim().to_string();

    let tmp = tempfile::tempdir().unwrap();
    let site = example("pi-k8s");
    let out = tmp.path().join("out");
    let o = build(&site, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let seed = tmp.path().join("lb1-seed.img");
    let o = run(&[
        "seed",
        site.to_str().unwrap(),
        "--node",
        "lb1",
        "-o",
        seed.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    let node_dir = out.join("lb1");
    let expect = Expect::of(&node_dir);
    assert!(expect.packages.iter().any(|p| p == "haproxy"));
    assert_eq!(expect.vips, ["192.168.3.240/24"]);
    assert_eq!(expect.local_vips, ["192.168.3.240/32"]);
    assert_eq!(expect.dropins.len(), 2, "{:?}", expect.dropins);
    assert_eq!(expect.gateway, "192.168.3.1/24");

    let work = tmp.path().join("vm");
    let started = std::time::Instant::now();
    let o = Command::new("sh")
        .arg(script("boot.sh"))
        .args([&base, seed.to_str().unwrap(), work.to_str().unwrap()])
        .arg(&expect.gateway)
        .arg("1200")
        .output()
        .expect("boot.sh runs");
    let took = started.elapsed().as_secs();
    let accel = std::fs::read_to_string(work.join("accel")).unwrap_or_default();
    eprintln!(
        "first boot of lb1 under {} took {took} s\n{}",
        accel.trim(),
        stderr(&o)
    );
    let text = std::fs::read_to_string(work.join("report.txt")).unwrap_or_default();
    let report = Report::parse(&text);
    if !o.status.success() || report.is_err() {
        panic!(
            "the VM did not report ({}):\n{}{}",
            report.err().unwrap_or_default(),
            stderr(&o),
            diagnosis(None, &work)
        );
    }
    let report = report.unwrap();
    let found = problems(&report, &expect);
    assert!(
        found.is_empty(),
        "lb1 did not come up as planned:\n  - {}\n{}",
        found.join("\n  - "),
        diagnosis(Some(&report), &work)
    );
    eprintln!(
        "lb1: {} files byte-identical, {:?} installed, {:?} enabled and active, {} and VIP {:?} on {}",
        expect.files.len(),
        expect.packages,
        expect.services,
        expect.address,
        expect.vips,
        expect.interface
    );
}

/// The checker itself: a report that matches the build passes, and each way a
/// first boot goes wrong is caught with its own sentence.
#[test]
fn the_report_checker_catches_each_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = build(&example("pi-k8s"), &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let expect = Expect::of(&out.join("lb1"));

    let mut good = String::from("noise before\nHASEED-REPORT-BEGIN\ncloud-init-exit 0\n");
    good.push_str("cloud-init-status-json-begin\n");
    good.push_str(r#"{"status": "done", "errors": [], "recoverable_errors": {}}"#);
    good.push_str("\ncloud-init-status-json-end\n");
    for s in &expect.services {
        good.push_str(&format!("service {s} enabled active\n"));
    }
    for d in &expect.dropins {
        let unit = d.split('/').nth(4).unwrap().trim_end_matches(".service.d");
        good.push_str(&format!("dropins {unit} /usr/lib/x {d}\n"));
    }
    for p in &expect.packages {
        good.push_str(&format!("package {p} 1.0 installed\n"));
    }
    good.push_str("track-file 0\naddr lo 127.0.0.1/8\n");
    for v in &expect.local_vips {
        good.push_str(&format!("addr lo {v}\n"));
    }
    good.push_str(&format!("addr {} {}\n", expect.interface, expect.address));
    for v in &expect.vips {
        good.push_str(&format!("addr {} {v}\n", expect.interface));
    }
    for (p, (h, m, o)) in &expect.files {
        good.push_str(&format!("mode {m} {o} {p}\nsha256 {h} {p}\n"));
    }
    good.push_str("HASEED-REPORT-END\n");
    let ok = problems(&Report::parse(&good).unwrap(), &expect);
    assert!(ok.is_empty(), "{ok:?}");

    let cfg = "/etc/haproxy/haproxy.cfg";
    let cases: Vec<(String, &str)> = vec![
        (
            good.replace(
                r#""recoverable_errors": {}"#,
                r#""recoverable_errors": {"WARNING": ["Failed to update package list"]}"#,
            ),
            "cloud-init WARNING",
        ),
        (
            good.replace(r#""done""#, r#""error""#),
            "status is \"error\"",
        ),
        (
            good.replace(
                "service haproxy enabled active",
                "service haproxy enabled failed",
            ),
            "service haproxy: enabled failed",
        ),
        (
            good.replace(
                "package keepalived 1.0 installed",
                "package keepalived 1.0 config-files",
            ),
            "package keepalived is not installed",
        ),
        (
            good.replace("track-file 0", "track-file 1"),
            "ExecStartPost did not run",
        ),
        (
            good.replace(&format!("sha256 {}", expect.files[cfg].0), "sha256 00"),
            "haproxy.cfg differs",
        ),
        (
            good.replace(
                &format!("mode 644 root:root {cfg}"),
                &format!("mode 600 root:root {cfg}"),
            ),
            "haproxy.cfg is 600 root:root",
        ),
        (
            good.replace(&format!("addr eth0 {}\n", expect.vips[0]), ""),
            "the VIP 192.168.3.240/24 is not on eth0",
        ),
        (
            good.replace(&format!("addr lo {}\n", expect.local_vips[0]), ""),
            "the VIP 192.168.3.240/32 is not on lo",
        ),
        (
            good.replace("dropins keepalived", "dropins keepalivedX"),
            "not in effect for keepalived.service",
        ),
        (
            good.replace(
                "HASEED-REPORT-END\n",
                "failed-unit haproxy.service\nHASEED-REPORT-END\n",
            ),
            "unit haproxy.service failed",
        ),
    ];
    for (text, want) in cases {
        let found = problems(&Report::parse(&text).unwrap(), &expect);
        assert!(
            found.iter().any(|p| p.contains(want)),
            "expected a problem containing {want:?}, got {found:?}"
        );
    }
    assert!(Report::parse("boot noise only").is_err());
    assert!(Report::parse("HASEED-REPORT-BEGIN\ncloud-init-exit 0\n").is_err());
}
