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

#[path = "firstboot/checks.rs"]
mod checks;
mod common;

use checks::*;
use common::*;
use std::path::PathBuf;
use std::process::Command;

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
