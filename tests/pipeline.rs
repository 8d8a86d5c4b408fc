//! End-to-end: the example site through the real binary, the golden files,
//! the real validators, determinism, the chain with a site plugin, atomic output.

mod common;

use common::*;

#[test]
fn example_site_matches_golden_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let o = build(&example("pi-k8s"), &out);
    assert!(o.status.success(), "build failed: {}", stderr(&o));
    assert_golden(&out, "pi-k8s");
    // The reference decisions, spelled out where a reviewer looks first.
    let haproxy =
        std::fs::read_to_string(out.join("lb1/files/etc/haproxy/haproxy.cfg")).expect("cfg");
    for line in [
        "bind *:9000",
        "balance roundrobin",
        // Not the reference's TCP connect `inter 3000ms rise 30 fall 3`: an
        // API server that is up but not ready (starting, or in a graceful
        // shutdown's delay) is out within 2 s and back 2 s after it is
        // ready (default-policy haproxy.rs; `haseed lab` scenario
        // backend-draining).
        "    option httpchk\n    http-check send meth GET uri /readyz\n",
        "server master1 192.168.3.251:6443 check inter 1000ms rise 2 fall 2 check-ssl verify none",
        "server master3 192.168.3.253:6443 check inter 1000ms rise 2 fall 2 check-ssl verify none",
        // Not the reference's connect 3 s, 6 retries, redispatch on the last:
        // a silent master costs a connection one 500 ms connect timeout
        // (default-policy haproxy.rs; `haseed lab` scenario backend-unreachable).
        "retries 3\n    timeout connect 500ms\n",
        "    option redispatch 1\n",
        // Not the reference's client 3 s / server 60 s: watches stay up
        // (default-policy haproxy.rs; `haseed lab` scenario long-lived).
        "timeout client 3600000ms\n    timeout server 3600000ms\n",
    ] {
        assert!(
            haproxy.contains(line),
            "haproxy.cfg lacks {line:?}:\n{haproxy}"
        );
    }
    let unit = |lb: &str, name: &str| {
        std::fs::read_to_string(out.join(lb).join(format!(
            "files/etc/systemd/system/{name}.service.d/50-haseed-failover.conf"
        )))
        .expect("drop-in")
    };
    let h = unit("lb1", "haproxy");
    assert!(h.contains("ExecStartPost=/bin/sh -c 'mkdir -p /var/lib/haseed && echo 0 > /var/lib/haseed/haproxy-down'\n"), "{h}");
    // The file exists and says down before haproxy is ready (keepalived
    // starts after haproxy and has no init_file to create it).
    assert!(h.contains("ExecStartPre=/bin/sh -c 'mkdir -p /var/lib/haseed && echo 1 > /var/lib/haseed/haproxy-down'\n"), "{h}");
    assert!(h.contains("ExecStopPost=/bin/sh -c 'mkdir -p /var/lib/haseed && echo 1 > /var/lib/haseed/haproxy-down'\n"), "{h}");
    let k = unit("lb2", "keepalived");
    for line in [
        "After=haproxy.service",
        "ExecStartPre=/bin/sh -c 'ip addr del 192.168.3.240/24 dev eth0 2>/dev/null; true'",
        "ExecStopPost=/bin/sh -c 'sleep 3.100; ip addr del 192.168.3.240/24 dev eth0 2>/dev/null; true'",
        // The VIP stays local on lo, never answered in ARP (failover.rs, 7).
        "ExecStartPre=-/bin/sh -c 'sysctl -q -w net/ipv4/conf/eth0/arp_ignore=1 net/ipv4/conf/eth0/arp_announce=2 && ip addr replace 192.168.3.240/32 dev lo'",
    ] {
        assert!(k.lines().any(|l| l == line), "lacks {line:?}:\n{k}");
    }
    let keepalived = std::fs::read_to_string(out.join("lb2/files/etc/keepalived/keepalived.conf"))
        .expect("conf");
    for line in [
        "state BACKUP",
        "nopreempt",
        "virtual_router_id 123", // no vrid: the start derived from the site name "pi-k8s"
        "enable_script_security",
        "192.168.3.240/24",
        // Event-driven failover (default-policy failover.rs).
        "priority 254",
        "version 2",
        "advert_int 1\n",
        "garp_master_refresh 1",
        // No init_file: keepalived 2.2.8-2.3.2 overwrite the file at every
        // start (default-policy failover.rs, decision 1).
        "file \"/var/lib/haseed/haproxy-down\"\n    weight 0\n}",
        "track_file {\n        haproxy_down\n        haproxy_unhealthy\n    }",
        // The watcher's file (failover.rs, 3): a missing one reads as 0.
        "file \"/var/lib/haseed/haproxy-unhealthy\"\n    weight 0\n}",
    ] {
        assert!(
            keepalived.contains(line),
            "keepalived.conf lacks {line:?}:\n{keepalived}"
        );
    }
    // keepalived 2.2.8-2.3.2 write init_file's value over the file at every
    // start, leaving the node FAULT (Ubuntu 24.04's keepalived).
    assert!(
        !keepalived.contains("init_file"),
        "keepalived.conf has an init_file:\n{keepalived}"
    );
    let watch = std::fs::read_to_string(
        out.join("lb2/files/etc/systemd/system/haseed-haproxy-watch.service"),
    )
    .expect("the watcher's unit");
    assert!(
        watch.contains("ExecStart=/usr/local/sbin/haseed-haproxy-watch 8404 /haseed-alive /var/lib/haseed/haproxy-unhealthy 100 200 2 192.168.3.241\n"),
        "{watch}"
    );
    let cfg = std::fs::read_to_string(out.join("lb2/files/etc/haproxy/haproxy.cfg")).expect("cfg");
    assert!(
        cfg.contains("    monitor fail if { nbsrv(kube-apiserver) lt 1 }\n"),
        "{cfg}"
    );
    assert!(
        !out.join("master1/files/etc/haproxy").exists(),
        "a master got haproxy"
    );
}

#[test]
fn real_validators_pass_on_every_node_of_the_example() {
    let o = run(&["validate", example("pi-k8s").to_str().expect("utf-8")]);
    let text = stdout(&o);
    assert!(
        o.status.success(),
        "validate failed:\n{text}\n{}",
        stderr(&o)
    );
    for node in ["lb1", "lb2"] {
        for validator in ["haproxy", "keepalived", "cloud-init"] {
            assert!(
                text.lines().any(|l| l.starts_with("ok")
                    && l.split_whitespace().nth(1) == Some(node)
                    && l.split_whitespace().nth(2) == Some(validator)),
                "no passing {validator} check for {node}:\n{text}"
            );
        }
    }
    for node in ["master1", "master2", "master3"] {
        assert!(
            text.lines().any(|l| l.starts_with("ok")
                && l.split_whitespace().nth(1) == Some(node)
                && l.split_whitespace().nth(2) == Some("cloud-init")),
            "no passing cloud-init check for {node}:\n{text}"
        );
    }
    assert!(!text.contains("FAIL"), "{text}");
}

#[test]
fn builds_are_byte_identical_and_replace_the_previous_build() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    assert!(build(&example("pi-k8s"), &a).status.success());
    assert!(build(&example("pi-k8s"), &b).status.success());
    assert_eq!(tree(&a), tree(&b), "two builds of one site differ");
    assert!(a.join("pi-k8s.tar.gz").exists());
    // Building again into the same directory replaces it whole.
    std::fs::write(a.join("lb1/stale"), b"old").expect("write");
    assert!(build(&example("pi-k8s"), &a).status.success());
    assert!(
        !a.join("lb1/stale").exists(),
        "a file of the previous build survived"
    );
    assert_eq!(tree(&a), tree(&b));
}

#[test]
fn bundle_holds_every_node_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    assert!(build(&example("pi-k8s"), &out).status.success());
    let gz = std::fs::File::open(out.join("pi-k8s.tar.gz")).expect("bundle");
    let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(gz));
    let mut names = Vec::new();
    for entry in archive.entries().expect("tar") {
        let entry = entry.expect("entry");
        assert_eq!(
            entry.header().mtime().expect("mtime"),
            0,
            "bundle mtimes are fixed"
        );
        names.push(entry.path().expect("path").to_string_lossy().into_owned());
    }
    for want in [
        "pi-k8s/lb1/user-data",
        "pi-k8s/lb1/meta-data",
        "pi-k8s/lb1/network-config",
        "pi-k8s/lb1/files/etc/haproxy/haproxy.cfg",
        "pi-k8s/lb2/files/etc/keepalived/keepalived.conf",
        "pi-k8s/master3/user-data",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "bundle lacks {want}: {names:?}"
        );
    }
}

#[test]
fn a_site_plugin_changes_decisions_after_the_default_policy() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = site_with_plugins(
        tmp.path(),
        &[(
            "prefer_lb1.wasm",
            r#"{ prefer = "lb1", rise = 5, fall = 2 }"#,
        )],
    );
    let o = run(&["plan", site.to_str().expect("utf-8"), "--json"]);
    assert!(o.status.success(), "plan failed: {}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let plan_of = |name: &str| {
        doc["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .find(|n| n["name"] == name)
            .expect("node")["plan"]
            .clone()
    };
    let lb1 = &plan_of("lb1")["keepalived"]["instances"][0];
    let lb2 = &plan_of("lb2")["keepalived"]["instances"][0];
    assert_eq!(lb1["state"], "Master", "{lb1}");
    assert_eq!(lb1["priority"], 150);
    assert_eq!(lb1["nopreempt"], false);
    assert_eq!(lb2["state"], "Backup");
    assert_eq!(lb2["priority"], 100);
    let server = &plan_of("lb2")["haproxy"]["backends"][0]["servers"][0];
    assert_eq!(server["check"]["rise"], 5, "{server}");
    assert_eq!(server["check"]["fall"], 2);
    // Its stderr reaches the user's log, prefixed with the plugin's name.
    let log = stderr(&o);
    assert!(
        log.lines()
            .any(|l| l.starts_with('[') && l.contains("prefer_lb1.wasm]") && l.contains("lb1")),
        "plugin log missing:\n{log}"
    );

    // The same chain renders configs the real validators accept.
    let o = run(&["validate", site.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let out = tmp.path().join("out");
    assert!(build(&site, &out).status.success());
    let conf = std::fs::read_to_string(out.join("lb1/files/etc/keepalived/keepalived.conf"))
        .expect("conf");
    assert!(
        conf.contains("state MASTER")
            && conf.contains("priority 150")
            && !conf.contains("nopreempt"),
        "{conf}"
    );
    let cfg = std::fs::read_to_string(out.join("lb1/files/etc/haproxy/haproxy.cfg")).expect("cfg");
    assert!(cfg.contains("check inter 1000ms rise 5 fall 2"), "{cfg}");
}

#[test]
fn plan_formats_table_and_dot() {
    let site = example("pi-k8s");
    let o = run(&["plan", site.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = stdout(&o);
    assert!(table.starts_with("NODE"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("lb1") && l.contains("BACKUP/254")),
        "{table}"
    );
    assert_eq!(table.lines().count(), 6, "{table}");

    let o = run(&["plan", site.to_str().expect("utf-8"), "--format", "dot"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Graphviz itself must accept it.
    let mut dot = std::process::Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("graphviz `dot` is installed (apt-get install graphviz)");
    use std::io::Write;
    dot.stdin
        .take()
        .expect("stdin")
        .write_all(&o.stdout)
        .expect("pipe");
    let svg = dot.wait_with_output().expect("dot runs");
    assert!(
        svg.status.success(),
        "dot rejected the graph:\n{}",
        stdout(&o)
    );
    let svg = String::from_utf8_lossy(&svg.stdout);
    assert!(svg.contains("<svg") && svg.contains("192.168.3.240") && svg.contains("master2"));
    // Each label line is its own text element: no literal backslash-n in the picture.
    assert!(!svg.contains("\\n"), "a literal \\n in a label:\n{svg}");
    assert!(svg.contains(">192.168.3.241</text>"), "{svg}");
}

#[test]
fn compiled_plugins_are_cached_on_disk() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cache = tmp.path().join("cache");
    let o = haseed()
        .env("HASEED_CACHE_DIR", &cache)
        .args(["plan", example("pi-k8s").to_str().expect("utf-8")])
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", stderr(&o));
    let entries: Vec<_> = std::fs::read_dir(&cache)
        .expect("cache dir created")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(entries.iter().any(|e| e.ends_with(".cwasm")), "{entries:?}");
    // A tampered cache entry is not loaded as code: the run recompiles and still works.
    for e in &entries {
        if e.ends_with(".cwasm") {
            std::fs::write(cache.join(e), b"not compiled code").expect("tamper");
        }
    }
    let o = haseed()
        .env("HASEED_CACHE_DIR", &cache)
        .args(["plan", example("pi-k8s").to_str().expect("utf-8")])
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Binding the VIP itself needs net.ipv4.ip_nonlocal_bind on both holders (the
/// standby does not hold the address), written to sysctl.d and applied at
/// first boot, before haproxy starts; the real validators still pass.
#[test]
fn binding_the_vip_brings_nonlocal_bind() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(example("pi-k8s"))
        .expect("example")
        .replacen("mode = \"tcp\"", "mode = \"tcp\"\nbind = \"vip\"", 1);
    let site = tmp.path().join("site.toml");
    std::fs::write(&site, text).expect("write");
    let out = tmp.path().join("out");
    assert!(build(&site, &out).status.success());
    for lb in ["lb1", "lb2"] {
        let cfg = std::fs::read_to_string(out.join(lb).join("files/etc/haproxy/haproxy.cfg"))
            .expect("cfg");
        assert!(cfg.contains("bind 192.168.3.240:9000"), "{cfg}");
        let sysctl =
            std::fs::read_to_string(out.join(lb).join("files/etc/sysctl.d/90-haseed.conf"))
                .expect("sysctl drop-in");
        assert!(sysctl.contains("net.ipv4.ip_nonlocal_bind = 1"), "{sysctl}");
        let user_data = std::fs::read_to_string(out.join(lb).join("user-data")).expect("ud");
        assert!(
            user_data.contains(r#"["sysctl","-w","net.ipv4.ip_nonlocal_bind=1"]"#),
            "not applied at first boot:\n{user_data}"
        );
    }
    assert!(
        !out.join("master1/files/etc/sysctl.d/90-haseed.conf")
            .exists()
            || !std::fs::read_to_string(out.join("master1/files/etc/sysctl.d/90-haseed.conf"))
                .expect("read")
                .contains("nonlocal")
    );
    let o = run(&["validate", site.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
}

/// `failover = false` gives back the reference keepalived settings: VRRPv2,
/// 1 s adverts, priority 100, no track file, no drop-ins, no monitor.
#[test]
fn failover_can_be_turned_off() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(example("pi-k8s")).expect("example");
    let site = tmp.path().join("site.toml");
    std::fs::write(
        &site,
        format!("{text}\n[default_policy]\nfailover = false\n"),
    )
    .expect("write");
    let out = tmp.path().join("out");
    let o = build(&site, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let conf = std::fs::read_to_string(out.join("lb1/files/etc/keepalived/keepalived.conf"))
        .expect("conf");
    for line in ["priority 100", "version 2", "advert_int 1\n"] {
        assert!(conf.contains(line), "lacks {line:?}:\n{conf}");
    }
    for word in ["track_file", "garp_master_refresh", "curl"] {
        assert!(!conf.contains(word), "has {word:?}:\n{conf}");
    }
    assert!(!out.join("lb1/files/etc/systemd").exists());
    let cfg = std::fs::read_to_string(out.join("lb1/files/etc/haproxy/haproxy.cfg")).expect("cfg");
    assert!(!cfg.contains("monitor-uri"), "{cfg}");
    // The reference's timeouts, as the write-up has them.
    assert!(
        cfg.contains("timeout client 3000ms\n    timeout server 60000ms\n"),
        "{cfg}"
    );
}

/// Every name in `dir` that a build leaves behind besides `keep` (staging or moved-aside
/// directories would show here).
fn leftovers(dir: &std::path::Path, keep: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("readable")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

#[test]
fn concurrent_builds_into_one_directory_all_succeed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let reference = tmp.path().join("reference");
    let o = build(&example("pi-k8s"), &reference);
    assert!(o.status.success(), "{}", stderr(&o));
    let want = tree(&reference);
    let out = tmp.path().join("out");
    let site = example("pi-k8s");
    for round in 0..8 {
        let children: Vec<_> = (0..3)
            .map(|_| {
                haseed()
                    .args(["build", site.to_str().expect("utf-8"), "-o"])
                    .arg(&out)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("haseed runs")
            })
            .collect();
        for child in children {
            let o = child.wait_with_output().expect("waited");
            assert!(o.status.success(), "round {round}:\n{}", stderr(&o));
        }
        assert!(
            tree(&out) == want,
            "round {round}: the output is not one whole build"
        );
    }
    let left = leftovers(
        tmp.path(),
        &[
            "reference",
            "out",
            ".out.haseed-lock",
            ".reference.haseed-lock",
        ],
    );
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_build_waits_for_the_lock_and_says_so() {
    use std::os::fd::AsRawFd;
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    // Another build's lock, held by this test.
    let lock = std::fs::File::create(tmp.path().join(".out.haseed-lock")).expect("lock file");
    // SAFETY: flock on a descriptor this test owns.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let log = tmp.path().join("stderr");
    let mut child = haseed()
        .args(["build", example("pi-k8s").to_str().expect("utf-8"), "-o"])
        .arg(&out)
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("haseed runs");
    let started = std::time::Instant::now();
    let waiting = loop {
        let text = std::fs::read_to_string(&log).expect("log");
        if text.contains("waiting for another haseed build into") {
            break text;
        }
        assert!(
            child.try_wait().expect("child").is_none(),
            "the build ended without waiting for the lock:\n{text}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "no waiting message:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(waiting.contains(".out.haseed-lock"), "{waiting}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!out.exists(), "the build wrote while another held the lock");
    assert!(
        child.try_wait().expect("child").is_none(),
        "the build did not wait"
    );
    drop(lock);
    let status = child.wait().expect("waited");
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(status.success(), "{text}");
    assert!(out.join("pi-k8s.tar.gz").exists() && out.join("lb1/user-data").exists());
}

/// `haseed completions SHELL` prints a script the shell accepts and that completes haseed's
/// commands; `haseed man` writes one page per visible command, rendered by the real man.
#[test]
fn completions_and_man_pages() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let o = run(&["completions", "bash"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let script = tmp.path().join("haseed.bash");
    std::fs::write(&script, &o.stdout).expect("write");
    let check = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -e; source {}; complete -p haseed; COMP_WORDS=(haseed plugin t); COMP_CWORD=2; \
             _haseed haseed t plugin; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        ))
        .output()
        .expect("bash runs");
    assert!(check.status.success(), "{}", stderr(&check));
    let out = stdout(&check);
    assert!(out.contains("-F _haseed haseed\n"), "{out}");
    assert!(
        out.lines().any(|l| l == "test"),
        "`haseed plugin t<TAB>` offers: {out}"
    );
    for shell in ["zsh", "fish"] {
        let o = run(&["completions", shell]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stdout(&o).contains("plugin"), "{shell}");
    }
    let o = run(&["completions", "tcsh"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );

    let dir = tmp.path().join("man1");
    let o = run(&["man", "-o", dir.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut pages: Vec<String> = std::fs::read_dir(&dir)
        .expect("man1")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    for want in [
        "haseed.1",
        "haseed-build.1",
        "haseed-plugin-test.1",
        "haseed-user-data.1",
        "haseed-lab.1",
    ] {
        assert!(pages.iter().any(|p| p == want), "no {want} in {pages:?}");
    }
    assert!(!pages.iter().any(|p| p.contains("compile")), "{pages:?}");
    let man = std::process::Command::new("man")
        .arg("-l")
        .arg(dir.join("haseed-plugin-test.1"))
        .env("MANPAGER", "cat")
        .env("COLUMNS", "100")
        .output()
        .expect("man runs (.ci/install-deps installs man-db)");
    assert!(man.status.success(), "{}", stderr(&man));
    let text = stdout(&man);
    assert!(text.contains("haseed plugin test [--json]"), "{text}");
    assert!(text.contains("regression tests"), "{text}");
}

/// `haseed --version` names the build and the plugin contract it runs (the one in wit/).
#[test]
fn version_names_the_build_and_the_contract() {
    let o = run(&["--version"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let wit = std::fs::read_to_string(repo_root().join("wit/policy.wit")).expect("wit");
    let package = wit
        .lines()
        .find_map(|l| l.strip_prefix("package "))
        .expect("package line")
        .trim_end_matches(';');
    let line = stdout(&o);
    assert!(
        line.starts_with(&format!("haseed {} (", env!("CARGO_PKG_VERSION"))),
        "{line}"
    );
    // Tests run a development build; a release build says `commit <hash>` here.
    assert!(line.contains("(development build, "), "{line}");
    assert!(
        line.trim_end()
            .ends_with(&format!("plugin contract {package})")),
        "{line}"
    );
}

/// docs/site.schema.json and docs/inventory.md are what `haseed schema` prints today
/// (`UPDATE_GOLDEN=1` rewrites them).
#[test]
fn schema_and_reference_are_up_to_date() {
    for (args, file) in [
        (&["schema"][..], "docs/site.schema.json"),
        (&["schema", "--format", "markdown"][..], "docs/inventory.md"),
    ] {
        let o = run(args);
        assert!(o.status.success(), "{}", stderr(&o));
        let path = repo_root().join(file);
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &o.stdout).expect("write");
        }
        let committed = std::fs::read_to_string(&path).expect(file);
        assert!(
            committed == stdout(&o),
            "{file} is out of date: run `haseed schema{}` (or UPDATE_GOLDEN=1 cargo test --test pipeline)",
            if file.ends_with(".md") { " --format markdown" } else { "" }
        );
    }
}

/// The real taplo (npm @taplo/cli, installed by .ci/install-deps) accepts every example through
/// its `#:schema` line and flags exactly the broken inventories a schema can see; the rest only
/// haseed catches (addresses, names, references, duplicates, overlaps, key formats).
#[test]
fn taplo_validates_sites_against_the_schema() {
    let taplo = std::env::var_os("HASEED_TAPLO")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/opt/haseed-taplo/node_modules/.bin/taplo".into());
    assert!(
        taplo.exists(),
        "{} missing: .ci/install-deps installs @taplo/cli",
        taplo.display()
    );
    let check = |file: &std::path::Path, schema: bool| {
        let mut cmd = std::process::Command::new(&taplo);
        cmd.arg("check").env("RUST_LOG", "error");
        if schema {
            cmd.arg("--schema").arg(format!(
                "file://{}",
                repo_root().join("docs/site.schema.json").display()
            ));
        }
        let o = cmd
            .arg(file.file_name().expect("name"))
            .current_dir(file.parent().expect("dir"))
            .output()
            .expect("taplo runs");
        o.status.success()
    };
    for example in ["pi-k8s", "aws", "nodeport", "openstack"] {
        let path = repo_root().join("examples").join(example).join("site.toml");
        let text = std::fs::read_to_string(&path).expect("example");
        assert!(
            text.starts_with("#:schema ../../docs/site.schema.json\n"),
            "{example}"
        );
        assert!(check(&path, false), "taplo rejects examples/{example}");
    }
    let flagged_by_schema = [
        "check-fall-zero",
        "check-inter-zero",
        "check-port-too-big",
        "check-rise-too-big",
        "check-unknown-key",
        "deep-arrays-in-settings",
        "deep-dotted-header",
        "deep-inline-tables",
        "default-policy-unknown-key",
        "missing-key-address",
        "missing-site-table",
        "plugin-missing-sha256",
        "service-backend-port-too-big",
        "service-port-too-big",
        "service-port-zero",
        "syntax-bad-header",
        "syntax-bad-value",
        "syntax-duplicate-key",
        "syntax-unclosed-string",
        "unknown-balance",
        "unknown-key",
        "unknown-mode",
        "unknown-platform",
        "unknown-role",
        "unknown-top-level-table",
        "vip-vrid-too-big",
        "vip-vrid-zero",
        "wrong-type-bool",
        "wrong-type-defaults",
        "wrong-type-node-array",
        "wrong-type-port",
        "wrong-type-role-element",
        "wrong-type-roles",
        "wrong-type-vip-element",
    ];
    let mut entries: Vec<_> = std::fs::read_dir(repo_root().join("tests/broken_inventories"))
        .expect("corpus")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    entries.sort();
    let stem = |p: &std::path::Path| p.file_stem().expect("stem").to_string_lossy().into_owned();
    // taplo's own stack overflows on the deeply nested inputs (haseed refuses them with a
    // located error): each runs alone, and a crash counts as flagged.
    let (deep, rest): (Vec<_>, Vec<_>) = entries.iter().partition(|p| stem(p).starts_with("deep-"));
    let mut flagged: Vec<String> = deep
        .iter()
        .filter(|p| !check(p, true))
        .map(|p| stem(p))
        .collect();
    // One run for the rest (taplo takes ~2 s to start): it names each invalid file.
    let o = std::process::Command::new(&taplo)
        .arg("check")
        .arg("--schema")
        .arg(format!(
            "file://{}",
            repo_root().join("docs/site.schema.json").display()
        ))
        .args(rest.iter().map(|p| p.file_name().expect("name")))
        .current_dir(repo_root().join("tests/broken_inventories"))
        .env("RUST_LOG", "error")
        .output()
        .expect("taplo runs");
    let log = stderr(&o);
    for p in &rest {
        if log.contains(&format!("path=\"{}\"", p.display())) {
            flagged.push(stem(p));
        }
    }
    flagged.sort();
    assert_eq!(flagged, flagged_by_schema, "taplo flagged a different set");
}

/// A refused `[default_policy]` setting points at its key's line (the
/// stage overlay's line for a staged key), in the user's words, said once
/// (issue 21 item 7: it was "settings: default-policy settings: priority:
/// invalid value: integer `300`, expected u8" at no line).
/// The `[default_policy]` keys the schema and docs/inventory.md describe are exactly the keys
/// the embedded default policy accepts: its refusal of an unknown key lists them.
#[test]
fn the_documented_default_policy_keys_are_the_policys() {
    let o = run(&["schema"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let schema: serde_json::Value = serde_json::from_slice(&o.stdout).expect("schema JSON");
    let mut documented: Vec<String> = schema["properties"]["default_policy"]["properties"]
        .as_object()
        .expect("default_policy properties")
        .keys()
        .cloned()
        .collect();
    documented.sort();
    let site = repo_root().join("tests/broken_inventories/default-policy-unknown-key.toml");
    let o = run(&["--quiet", "plan", site.to_str().expect("utf-8")]);
    assert!(!o.status.success());
    let err = stderr(&o);
    let list = err
        .lines()
        .find_map(|l| l.split_once("the keys are ").map(|(_, keys)| keys))
        .unwrap_or_else(|| panic!("no key list in: {err}"));
    let mut accepted: Vec<String> = list
        .trim_end_matches('.')
        .split(", ")
        .map(str::to_string)
        .collect();
    accepted.sort();
    assert_eq!(documented, accepted, "docs vs the policy");
}

#[test]
fn a_refused_default_policy_setting_points_at_its_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = std::fs::read_to_string(example("pi-k8s")).expect("example");
    for (add, stage, key_line, says) in [
        (
            "[default_policy]\npriority = 300\n",
            None,
            "priority = 300",
            "priority must be 1..254 (got 300)",
        ),
        (
            "[default_policy]\nfailover = \"yes\"\n",
            None,
            "failover = ",
            "failover must be true or false (got \"yes\")",
        ),
        (
            "[default_policy]\ncolour = 1\n",
            None,
            "colour = 1",
            "colour is not a setting of the default policy; the keys are check_script",
        ),
        (
            "[default_policy]\npriority = 200\n\n[stage.x.default_policy]\npriority = 0\n",
            Some("x"),
            "priority = 0",
            "priority must be 1..254 (got 0)",
        ),
    ] {
        let text = format!("{base}\n{add}");
        let site = tmp.path().join("site.toml");
        std::fs::write(&site, &text).expect("write");
        let mut args = vec!["validate", site.to_str().expect("utf-8")];
        if let Some(st) = stage {
            args.extend(["--stage", st]);
        }
        let o = run(&args);
        assert_eq!(o.status.code(), Some(1), "{add}");
        let line = text
            .lines()
            .position(|l| l.starts_with(key_line))
            .expect("the key's line")
            + 1;
        let want = format!(
            "{}:{line}:1: error: plugin default-policy: rejected its settings: {says}",
            site.display()
        );
        let err = stderr(&o);
        assert!(err.contains(&want), "want {want}\n{err}");
        assert_eq!(err.matches("settings:").count(), 1, "{err}");
    }
}

/// Files get their exact modes whatever the umask: under 077 the build
/// still writes 0644 configs and 0755 scripts, and under 022 (where the
/// mode survives the umask and no fchmod is made) the same.
#[test]
fn file_modes_are_exact_under_any_umask() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = example("pi-k8s");
    for mask in ["077", "022", "000"] {
        let out = tmp.path().join(format!("out-{mask}"));
        let cmd = format!(
            "umask {mask} && exec env HASEED_CACHE_DIR='{}' '{}' -q build '{}' -o '{}'",
            cache_dir().display(),
            env!("CARGO_BIN_EXE_haseed"),
            site.display(),
            out.display()
        );
        let o = std::process::Command::new("sh")
            .args(["-c", &cmd])
            .output()
            .expect("sh");
        assert!(o.status.success(), "{}", stderr(&o));
        use std::os::unix::fs::PermissionsExt;
        let mode = |rel: &str| {
            std::fs::metadata(out.join(rel))
                .unwrap_or_else(|e| panic!("{rel}: {e}"))
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(
            mode("lb1/files/etc/haproxy/haproxy.cfg"),
            0o644,
            "umask {mask}"
        );
        assert_eq!(mode("lb1/user-data"), 0o600, "umask {mask}");
        assert_eq!(
            mode("master1/files/usr/local/sbin/haseed-kubernetes-apt"),
            0o755,
            "umask {mask}"
        );
    }
}
