//! The first-boot report and its checks, shared by tests/firstboot.rs (a seed
//! on the synthetic base) and tests/card.rs (a card image on a twin): what a
//! node's build output says first boot must produce (`Expect`), the report
//! the harness's unit writes to the VM's second serial port (`Report`, see
//! report.sh), and every way the node differs from its plan (`problems`).
#![allow(dead_code)]

use super::common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What a node's build output says first boot must produce.
pub struct Expect {
    /// path on the node -> (sha256, mode "644", owner "root:root")
    pub files: BTreeMap<String, (String, String, String)>,
    pub packages: Vec<String>,
    pub services: Vec<String>,
    pub interface: String,
    pub address: String,
    /// The node's default route with its address's prefix: the test bridge's address.
    pub gateway: String,
    pub vips: Vec<String>,
    /// Addresses the keepalived drop-in keeps on lo (`X/32`).
    pub local_vips: Vec<String>,
    pub dropins: Vec<String>,
}

impl Expect {
    /// Reads `DIR/NODE/`: the file tree, user-data (packages, modes, owners,
    /// services enabled by runcmd) and network-config (the static address).
    pub fn of(node_dir: &Path) -> Expect {
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
pub struct Report {
    lines: Vec<(String, String)>,
    status_json: Option<serde_json::Value>,
}

impl Report {
    pub fn parse(text: &str) -> Result<Report, String> {
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

    pub fn all<'r>(&'r self, kind: &'r str) -> impl Iterator<Item = &'r str> + 'r {
        self.lines
            .iter()
            .filter(move |(k, _)| k == kind)
            .map(|(_, v)| v.as_str())
    }
}

/// Every way the node differs from its plan, as sentences; empty when it
/// came up as planned.
pub fn problems(report: &Report, expect: &Expect) -> Vec<String> {
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
pub fn diagnosis(report: Option<&Report>, work: &Path) -> String {
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
