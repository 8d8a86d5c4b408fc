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
use std::path::{Path, PathBuf};
use std::process::Command;

fn script(name: &str) -> PathBuf {
    repo_root().join("tests/firstboot").join(name)
}

/// The trixie base (built once, cached): its directory. The tests that boot it need root
/// (network namespace, tap, qemu); CI runs as root.
fn base() -> String {
    assert!(
        is_root(),
        "the first-boot tests need root (network namespace, tap, qemu); CI runs as root"
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
    stdout(&base).lines().last().unwrap().trim().to_string()
}

#[test]
fn the_example_lb_boots_and_becomes_its_plan() {
    let _one = ONE_VM.lock().unwrap_or_else(|e| e.into_inner());
    let base = base();

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

/// One VM at a time: two TCG guests on a 2-core machine starve each other.
static ONE_VM: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// serve.sh running lb1: the namespace to work in; stops the VM when dropped.
struct Served {
    child: std::process::Child,
    work: PathBuf,
    ns: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = std::fs::write(self.work.join("stop"), "");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(base: &str, seed: &Path, work: &Path, gateway: &str) -> Served {
    let child = Command::new("sh")
        .arg(script("serve.sh"))
        .args([
            base,
            seed.to_str().unwrap(),
            work.to_str().unwrap(),
            gateway,
            "1800",
        ])
        .spawn()
        .expect("serve.sh runs");
    let mut served = Served {
        child,
        work: work.to_path_buf(),
        ns: String::new(),
    };
    loop {
        if let Ok(ns) = std::fs::read_to_string(work.join("ready")) {
            served.ns = ns.trim().to_string();
            return served;
        }
        if let Ok(Some(status)) = served.child.try_wait() {
            panic!(
                "serve.sh stopped ({status}) before lb1 was up:\n{}",
                diagnosis(None, work)
            );
        }
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
}

/// Day 2 under real systemd (issue 20 item 4): lb1 boots its seed, then `haseed diff` and
/// `haseed apply` reach it over real SSH (OpenSSH client and server, the site's key, host key
/// checked, sudo): in sync after first boot; an haproxy change applied as a reload (same master
/// PID), recorded, in sync afterwards; a change whose reload fails on the node (a port another
/// program there holds) rolled back with the node still serving; a changed host key, a wrong
/// key, a held lock and an unreachable node each refused with what to do.
#[test]
fn diff_and_apply_reach_the_booted_lb_over_ssh() {
    let _one = ONE_VM.lock().unwrap_or_else(|e| e.into_inner());
    let base = base();

    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = keypair(tmp.path());
    let site_dir = tmp.path().join("site");
    std::fs::create_dir_all(&site_dir).unwrap();
    let site = site_with_key(&site_dir, &public, "raspios");
    let text = std::fs::read_to_string(&site).unwrap();
    let write = |name: &str, text: &str| {
        let p = site_dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    // An haproxy-only change, and one whose reload the node refuses (port 9100 is taken there).
    let changed = write(
        "changed.toml",
        &text.replacen("[[service]]", "[[service]]\ncheck = { rise = 7 }", 1),
    );
    let taken = write(
        "taken.toml",
        &text
            .replacen("[[service]]", "[[service]]\ncheck = { rise = 7 }", 1)
            .replacen("port = 9000", "port = 9100", 1),
    );
    let site = site.to_str().unwrap().to_string();
    let seed = tmp.path().join("lb1-seed.img");
    let o = run(&["seed", &site, "--node", "lb1", "-o", seed.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));

    let work = tmp.path().join("vm");
    let started = std::time::Instant::now();
    let vm = serve(&base, &seed, &work, "192.168.3.1/24");
    eprintln!("lb1 up after {} s", started.elapsed().as_secs());
    let known = tmp.path().join("known_hosts");
    let key = key.to_str().unwrap().to_string();
    let ssh_opts = |known: &Path| {
        vec![
            "-i".to_string(),
            key.clone(),
            "--known-hosts".into(),
            known.to_str().unwrap().to_string(),
        ]
    };
    let haseed = |args: &[&str], known: &Path| {
        let o = Command::new("ip")
            .args(["netns", "exec", &vm.ns, env!("CARGO_BIN_EXE_haseed")])
            .env("HASEED_CACHE_DIR", cache_dir())
            .args(args)
            .args(ssh_opts(known))
            .output()
            .expect("ip netns exec haseed");
        eprintln!(
            "haseed {}: exit {:?}\n{}{}",
            args.join(" "),
            o.status.code(),
            stdout(&o),
            stderr(&o)
        );
        o
    };
    let on_node = |command: &str| {
        let o = Command::new("ip")
            .args([
                "netns",
                "exec",
                &vm.ns,
                "ssh",
                "-i",
                &key,
                "-o",
                "BatchMode=yes",
            ])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known.display()))
            .args([
                "-o",
                "StrictHostKeyChecking=accept-new",
                "pi@192.168.3.241",
                command,
            ])
            .output()
            .expect("ip netns exec ssh");
        assert!(o.status.success(), "{command}: {}", stderr(&o));
        stdout(&o).trim().to_string()
    };
    // The user's first login records the node's host key (accept-new), as `ssh pi@lb1` does.
    on_node("true");
    let sha = |path: &str| on_node(&format!("sha256sum {path}"))[..64].to_string();
    let cfg = "/etc/haproxy/haproxy.cfg";

    // 1. As first boot left it: in sync, nothing recorded yet.
    let o = haseed(&["diff", &site, "--node", "lb1"], &known);
    assert_eq!(o.status.code(), Some(0), "first boot left lb1 as built");
    assert!(stdout(&o).contains("lb1 (192.168.3.241): in sync (no apply recorded)"));

    // 2. The haproxy change: a diff, then a reload (same master), recorded, in sync.
    let o = haseed(&["diff", &changed, "--node", "lb1"], &known);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("changed: /etc/haproxy/haproxy.cfg") && stdout(&o).contains("rise 7")
    );
    let master = on_node("systemctl show -p MainPID --value haproxy.service");
    let before = sha(cfg);
    let o = haseed(&["apply", &changed, "--node", "lb1", "--dry-run"], &known);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout(&o).contains("validate /etc/haproxy/haproxy.cfg on the node: haproxy -c -f {}")
            && stdout(&o).contains("reload haproxy.service (haproxy re-reads its configuration"),
        "--dry-run prints the steps and why"
    );
    // Without --yes and without a terminal to ask on: refused.
    let o = haseed(&["apply", &changed, "--node", "lb1"], &known);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("pass --yes"), "{}", stderr(&o));
    assert_eq!(sha(cfg), before, "neither changed the node");
    let o = haseed(
        &["apply", &changed, "--node", "lb1", "--yes", "--json"],
        &known,
    );
    assert_eq!(o.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON");
    let node = &doc["nodes"][0];
    assert_eq!(node["result"], "applied", "{doc:#}");
    let steps: Vec<&str> = node["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert!(
        steps.contains(&"validate /etc/haproxy/haproxy.cfg"),
        "{steps:?}"
    );
    assert!(steps.contains(&"reload haproxy.service"), "{steps:?}");
    assert!(!steps.iter().any(|s| s.starts_with("restart")), "{steps:?}");
    assert_eq!(
        on_node("systemctl show -p MainPID --value haproxy.service"),
        master,
        "a reload keeps haproxy's master"
    );
    let out = tmp.path().join("out");
    assert!(build(Path::new(&changed), &out).status.success());
    let built = sha256_file(&out.join("lb1/files/etc/haproxy/haproxy.cfg"));
    assert_eq!(sha(cfg), built);
    let record: serde_json::Value =
        serde_json::from_str(&on_node("sudo cat /var/lib/haseed/applied.json")).unwrap();
    assert_eq!(record["state"]["files"][cfg]["sha256"], built.as_str());
    let o = haseed(&["diff", &changed, "--node", "lb1", "--json"], &known);
    assert_eq!(o.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON");
    assert_eq!(doc["nodes"][0]["applied"]["build"], record["build"]);
    assert_eq!(doc["nodes"][0]["build"], record["build"]);
    let o = haseed(&["diff", &site, "--node", "lb1"], &known);
    assert_eq!(o.status.code(), Some(1), "the first build is now the drift");

    // 3. A reload the node cannot take: port 9100 is held there by another program.
    on_node("sudo systemd-run --unit=squatter /usr/bin/systemd-socket-activate -l 9100 /bin/cat >/dev/null 2>&1; sleep 1");
    assert_eq!(
        on_node("ss -Hltn 'sport = :9100' | wc -l"),
        "1",
        "the squatter holds port 9100 on lb1"
    );
    let o = haseed(&["apply", &taken, "--node", "lb1", "--yes"], &known);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("node lb1 (192.168.3.241): step reload haproxy.service failed")
            && err.contains("its previous files are back")
            && err.contains("Address already in use"),
        "{err}"
    );
    assert_eq!(sha(cfg), built, "the previous haproxy.cfg is back");
    assert_eq!(on_node("systemctl is-active haproxy.service"), "active");
    assert_eq!(
        on_node("systemctl show -p MainPID --value haproxy.service"),
        master
    );
    let o = haseed(&["diff", &changed, "--node", "lb1"], &known);
    assert_eq!(o.status.code(), Some(0), "lb1 holds the last good build");

    // 4. A keepalived change on the VIP's holder: the VIP is handed over first (keepalived
    // stopped: with no peer up it simply leaves), then the files, then keepalived started.
    let advert = write(
        "advert.toml",
        &format!(
            "{}\n[default_policy]\nadvert_int_ms = 2000\n",
            std::fs::read_to_string(&changed).unwrap()
        ),
    );
    let holds_vip = || {
        on_node("ip -o addr show dev eth0")
            .lines()
            .any(|l| l.contains(" 192.168.3.240/24 "))
    };
    assert!(holds_vip(), "lb1 holds the VIP before the change");
    let o = haseed(
        &["apply", &advert, "--node", "lb1", "--yes", "--json"],
        &known,
    );
    assert_eq!(o.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON");
    let steps: Vec<&str> = doc["nodes"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    let at = |name: &str| {
        steps
            .iter()
            .position(|s| *s == name)
            .unwrap_or_else(|| panic!("no step {name}: {steps:?}"))
    };
    assert!(at("hand-over") < at("swap") && at("swap") < at("start keepalived.service"));
    assert!(
        steps.contains(&"validate /etc/keepalived/keepalived.conf"),
        "{steps:?}"
    );
    assert!(!steps.iter().any(|s| s.starts_with("restart")), "{steps:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !holds_vip() {
        assert!(
            std::time::Instant::now() < deadline,
            "lb1 did not take the VIP back within 30 s of keepalived's start"
        );
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    assert!(on_node("cat /etc/keepalived/keepalived.conf").contains("advert_int 2"));
    let o = haseed(&["diff", &advert, "--node", "lb1"], &known);
    assert_eq!(o.status.code(), Some(0));

    // 5. Refusals, each naming the node and what to do; nothing changes.
    on_node(
        "sudo sh -c 'nohup flock /var/lib/haseed/apply.lock sleep 60 >/dev/null 2>&1 &'; sleep 1",
    );
    let o = haseed(&["apply", &site, "--node", "lb1", "--yes"], &known);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("another haseed apply holds"),
        "{}",
        stderr(&o)
    );
    // flock and the sleep that holds its lock ('^sleep 60$' does not match this command line).
    on_node("sudo pkill -x flock; sudo pkill -f '^sleep 60$'; true");

    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let (other_key, _) = keypair(&other);
    let forged = tmp.path().join("forged_known_hosts");
    let other_pub = std::fs::read_to_string(other_key.with_extension("pub")).unwrap();
    let mut words = other_pub.split_whitespace();
    std::fs::write(
        &forged,
        format!(
            "192.168.3.241 {} {}\n",
            words.next().unwrap(),
            words.next().unwrap()
        ),
    )
    .unwrap();
    let o = haseed(&["diff", &site, "--node", "lb1"], &forged);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("node lb1 (192.168.3.241): its host key does not match"),
        "{}",
        stderr(&o)
    );

    let o = Command::new("ip")
        .args(["netns", "exec", &vm.ns, env!("CARGO_BIN_EXE_haseed")])
        .env("HASEED_CACHE_DIR", cache_dir())
        .args([
            "diff",
            &site,
            "--node",
            "lb1",
            "-i",
            other_key.to_str().unwrap(),
        ])
        .arg("--known-hosts")
        .arg(&known)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("refused the login as pi"),
        "{}",
        stderr(&o)
    );

    // A login without passwordless sudo (a user the test adds, with the same key).
    on_node(
        "sudo useradd -m guest && sudo install -d -o guest -m 700 /home/guest/.ssh && \
         sudo install -o guest -m 600 .ssh/authorized_keys /home/guest/.ssh/authorized_keys",
    );
    let guest = write(
        "guest.toml",
        &text.replacen("user = \"pi\"", "user = \"guest\"", 1),
    );
    let o = haseed(&["diff", &guest, "--node", "lb1"], &known);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("node lb1 (192.168.3.241): ")
            && stderr(&o).contains("haseed needs guest to run commands as root without a password"),
        "{}",
        stderr(&o)
    );

    let o = haseed(
        &["diff", &site, "--node", "lb2", "--connect-timeout", "3"],
        &known,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("node lb2 (192.168.3.242): unreachable"),
        "{}",
        stderr(&o)
    );
    eprintln!("day 2 on lb1 done after {} s", started.elapsed().as_secs());
}
