//! The example plugins in plugins/ on a site with workers and a Galera
//! cluster: what they decide, and that the real validators accept it.

mod common;

use common::*;

const SITE: &str = r#"
[site]
name = "edge"

[defaults]
platform = "ubuntu"
user = "ops"
ssh_authorized_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExampleExam ops@example"]

[[network]]
name = "lan"
cidr = "10.44.194.0/24"
gateway = "10.44.194.1"
dns = ["10.44.194.1"]

[[vip]]
name = "front"
address = "10.44.194.10"
network = "lan"

[[service]]
name = "k8s-nodeport"
vip = "front"
port_range = "30000-32767"
backend_role = "worker"
check = { port = 29499 }

[[service]]
name = "galera"
vip = "front"
port = 3306
backend_role = "db"

[[node]]
name = "lb1"
roles = ["lb"]
address = "10.44.194.11"

[[node]]
name = "lb2"
roles = ["lb"]
address = "10.44.194.12"

[[node]]
name = "node01"
roles = ["worker"]
address = "10.44.194.62"

[[node]]
name = "node02"
roles = ["worker"]
address = "10.44.194.85"

[[node]]
name = "db1"
roles = ["db"]
address = "10.44.194.31"

[[node]]
name = "db2"
roles = ["db"]
address = "10.44.194.32"

[[node]]
name = "db3"
roles = ["db"]
address = "10.44.194.33"
"#;

fn site_with(dir: &std::path::Path, plugins: &[(&str, &str)]) -> std::path::PathBuf {
    let mut text = SITE.to_string();
    for (file, settings) in plugins {
        text.push_str(&plugin_entry(&plugin(file), Some(settings)));
    }
    let site = dir.join("site.toml");
    std::fs::write(&site, text).expect("write");
    site
}

#[test]
fn nodeport_and_galera_single_writer_decide_and_validate() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = site_with(
        tmp.path(),
        &[
            ("nodeport.wasm", "{}"),
            ("galera_single_writer.wasm", r#"{ writer = "db2" }"#),
        ],
    );
    let out = tmp.path().join("out");
    let o = build(&site, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let cfg = std::fs::read_to_string(out.join("lb1/files/etc/haproxy/haproxy.cfg")).expect("cfg");
    // NodePort as in the reference: the client's port to every worker,
    // health on 29499, rise 15 fall 1.
    assert!(cfg.contains("bind *:30000-32767"), "{cfg}");
    assert!(
        cfg.contains("server node01 10.44.194.62 check inter 5000ms rise 15 fall 1 port 29499"),
        "{cfg}"
    );
    // Galera: db2 takes the writes, the others wait as backup (the default
    // policy's db check: the health endpoint on 9200).
    assert!(
        cfg.contains(
            "server db2 10.44.194.32:3306 check inter 2000ms rise 2 fall 5 port 9200 \
             on-marked-down shutdown-sessions on-marked-up shutdown-backup-sessions\n"
        ),
        "{cfg}"
    );
    assert!(
        cfg.contains(
            "server db1 10.44.194.31:3306 check inter 2000ms rise 2 fall 5 port 9200 backup \
             on-marked-down shutdown-sessions\n"
        ),
        "{cfg}"
    );
    assert!(
        cfg.contains(
            "server db3 10.44.194.33:3306 check inter 2000ms rise 2 fall 5 port 9200 backup \
             on-marked-down shutdown-sessions\n"
        ),
        "{cfg}"
    );
    let rotate =
        std::fs::read_to_string(out.join("lb1/files/etc/logrotate.d/haproxy")).expect("logrotate");
    assert!(
        rotate.contains("rotate 10") && rotate.contains("daily"),
        "{rotate}"
    );
    assert!(out.join("lb2/files/etc/rsyslog.d/49-haproxy.conf").exists());
    let log = stderr(&o);
    assert!(
        log.contains("galera-single-writer: galera: writer db2, 2 backup(s)"),
        "{log}"
    );

    let o = run(&["validate", site.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
}

/// plugins/drop-tracking (the harmful example tests/lab.rs catches) leaves
/// a plan the checker and the real validators accept: only the lab shows
/// the damage.
#[test]
fn drop_tracking_removes_the_tracking_and_still_validates() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = site_with(tmp.path(), &[("drop_tracking.wasm", "{}")]);
    let out = tmp.path().join("out");
    let o = build(&site, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("drop-tracking: lb1: 3 tracked checks removed"),
        "{}",
        stderr(&o)
    );
    for lb in ["lb1", "lb2"] {
        let conf =
            std::fs::read_to_string(out.join(lb).join("files/etc/keepalived/keepalived.conf"))
                .expect("keepalived.conf");
        for word in ["track_script", "track_file", "vrrp_script"] {
            assert!(!conf.contains(word), "{lb}: {word}\n{conf}");
        }
        assert!(conf.contains("vrrp_instance"), "{conf}");
    }
    let o = run(&["validate", site.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
}

/// drop-tracking declares the tracking fields it removes (issue 22 item 3). A site that pins
/// it with a scope leaving them out refuses the build, naming the plugin, the node and the
/// field, and writes nothing; with the tracking fields granted it builds. Its 0.1 build
/// declares no scope: the site's scope alone restricts it, the same way.
#[test]
fn drop_tracking_is_refused_unless_its_scope_grants_the_tracking_fields() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tracking = r#"scope = ["keepalived.instances.track-scripts", "keepalived.instances.track-files", "keepalived.scripts", "keepalived.track-files"]"#;
    let narrow = r#"scope = ["keepalived.instances.priority"]"#;
    for (contract, dir) in [
        ("0.3", env!("HASEED_PLUGIN_DIR")),
        ("0.1", env!("HASEED_PLUGIN_DIR_0_1")),
    ] {
        let wasm = std::path::Path::new(dir).join("drop_tracking.wasm");
        for (scope, builds) in [(narrow, false), (tracking, true)] {
            let mut text = SITE.to_string();
            text.push_str(&plugin_entry(&wasm, Some("{}")));
            text.push_str(scope);
            text.push('\n');
            let site = tmp.path().join("site.toml");
            std::fs::write(&site, text).expect("write");
            let out = tmp.path().join(format!("out-{contract}-{builds}"));
            let o = build(&site, &out);
            let err = stderr(&o);
            assert_eq!(
                o.status.success(),
                builds,
                "{contract} with {scope}:\n{err}"
            );
            if builds {
                assert!(
                    err.contains("drop-tracking: lb1: 3 tracked checks removed"),
                    "{err}"
                );
                continue;
            }
            assert!(!out.exists(), "{contract}: written after the refusal");
            let refusal = format!(
                "plugin {}: node lb1: changed keepalived.instances.track-scripts, outside its \
                 change scope (its [[plugin]] entry in the site grants: \
                 keepalived.instances.priority)",
                wasm.display()
            );
            assert!(err.contains(&refusal), "{contract}: {err}");
        }
    }
}

#[test]
fn example_plugins_refuse_bad_settings_before_any_node() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for (file, settings, says) in [
        (
            "galera_single_writer.wasm",
            r#"{ writer = "node01" }"#,
            "settings.writer: node01 is not a node with role db",
        ),
        (
            "nodeport.wasm",
            "{ rise = 0 }",
            "settings.rise: 0 is not in 1..1000",
        ),
        ("nodeport.wasm", "{ health = 1 }", "unknown key \"health\""),
        ("drop_tracking.wasm", "{ all = true }", "takes no settings"),
    ] {
        let site = site_with(tmp.path(), &[(file, settings)]);
        let o = run(&["plan", site.to_str().expect("utf-8")]);
        assert_eq!(o.status.code(), Some(1), "{file} {settings}");
        assert!(stderr(&o).contains(says), "{file}: {}", stderr(&o));
        assert!(!stderr(&o).contains("node lb1"), "{}", stderr(&o));
        // Located at the entry's `settings` line (the key's column when the
        // refusal names one), not at its path (issue 21 item 7).
        let text = std::fs::read_to_string(&site).expect("site");
        let line = text
            .lines()
            .position(|l| l.starts_with("settings = "))
            .expect("a settings line")
            + 1;
        let at = format!("{}:{line}:", site.display());
        assert!(
            stderr(&o).contains(&at) && stderr(&o).contains("rejected its settings: "),
            "{file}: want {at}: {}",
            stderr(&o)
        );
        assert_eq!(stderr(&o).matches("settings:").count(), 1, "{}", stderr(&o));
    }
}

/// Builds plugins/python/weights with componentize-py (installed by
/// .ci/install-deps; a missing tool fails the test with that hint).
fn build_python_plugin(dir: &std::path::Path) -> std::path::PathBuf {
    let out = dir.join("weights.wasm");
    componentize_py(
        &repo_root().join("wit"),
        &repo_root().join("plugins/python/weights"),
        &out,
    );
    out
}

/// The contract is language-neutral: a Python plugin does real work in the chain.
#[test]
fn python_plugin_weights_and_drains_servers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wasm = build_python_plugin(tmp.path());
    let mut text = std::fs::read_to_string(example("pi-k8s")).expect("example");
    text.push_str(&plugin_entry(
        &wasm,
        Some(r#"{ weights = { master1 = 200 }, drain = ["master3"] }"#),
    ));
    let site = tmp.path().join("site.toml");
    std::fs::write(&site, text).expect("write");
    let out = tmp.path().join("out");
    let o = build(&site, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let cfg = std::fs::read_to_string(out.join("lb2/files/etc/haproxy/haproxy.cfg")).expect("cfg");
    assert!(
        cfg.contains(
            "server master1 192.168.3.251:6443 check inter 1000ms rise 2 fall 2 check-ssl verify none weight 200"
        ),
        "{cfg}"
    );
    assert!(
        cfg.contains(
            "server master3 192.168.3.253:6443 check inter 1000ms rise 2 fall 2 check-ssl verify none weight 0"
        ),
        "{cfg}"
    );
    assert!(
        cfg.contains("server master2 192.168.3.252:6443 check inter 1000ms rise 2 fall 2 check-ssl verify none\n"),
        "{cfg}"
    );
    let log = stderr(&o);
    assert!(log.contains("weights: lb1: 2 server(s) weighted"), "{log}");
    assert!(
        log.contains("warning: node lb1: master3 is drained"),
        "{log}"
    );

    // Its settings are checked in open(), before any node, with the field named.
    let bad = std::fs::read_to_string(&site)
        .expect("site")
        .replace("master1 = 200", "master1 = 999");
    std::fs::write(&site, bad).expect("write");
    let o = run(&["plan", site.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("settings.weights.master1: 999 is not a weight 0..256"),
        "{}",
        stderr(&o)
    );

    // Its own fixtures pass (`haseed plugin test`).
    assert_fixtures_pass(&wasm, "plugins/python/weights/fixtures", 2);
}

/// Every example plugin carries fixtures (`plugins/NAME/fixtures/*.toml`) that pass.
#[test]
fn example_plugins_pass_their_fixtures() {
    for (file, dir, count) in [
        ("prefer_lb1.wasm", "plugins/prefer-lb1/fixtures", 3),
        ("nodeport.wasm", "plugins/nodeport/fixtures", 2),
        ("apt_mirror.wasm", "plugins/apt-mirror/fixtures", 1),
        (
            "galera_single_writer.wasm",
            "plugins/galera-single-writer/fixtures",
            2,
        ),
    ] {
        assert_fixtures_pass(&plugin(file), dir, count);
    }
}

fn assert_fixtures_pass(wasm: &std::path::Path, dir: &str, count: usize) {
    let o = run(&[
        "plugin",
        "test",
        wasm.to_str().expect("utf-8"),
        repo_root().join(dir).to_str().expect("utf-8"),
        "--json",
    ]);
    assert!(o.status.success(), "{dir}:\n{}\n{}", stdout(&o), stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(doc["haseed"]["command"], "plugin test", "{dir}: {doc}");
    let outcomes = doc["fixtures"].as_array().expect("array");
    assert_eq!(outcomes.len(), count, "{dir}: {doc}");
    assert!(outcomes.iter().all(|x| x["passed"] == true), "{dir}: {doc}");
}

/// The example plugins built against the contracts 0.1.0 and 0.2.0 as they shipped
/// (`wit/previous/`, builder/build.rs) and against the current one give the same build, byte
/// for byte, on sites whose plans hold what 0.1 cannot express: APT sources (plugins/apt-mirror,
/// a current plugin, adds one before the plugin under test) and a VIP that moves on AWS
/// (issue 22 item 1). The older builds declare no change scope; the current ones do, and keep
/// to it.
#[test]
fn plugins_built_against_earlier_contracts_build_the_same_sites() {
    let cases: [(&str, String, Plugins); 4] = [
        (
            "pi-k8s",
            std::fs::read_to_string(example("pi-k8s")).expect("example"),
            &[("prefer_lb1.wasm", "{}")],
        ),
        (
            "aws",
            std::fs::read_to_string(example("aws")).expect("example"),
            &[("prefer_lb1.wasm", "{}")],
        ),
        (
            "edge",
            SITE.to_string(),
            &[
                ("nodeport.wasm", "{}"),
                ("galera_single_writer.wasm", r#"{ writer = "db2" }"#),
            ],
        ),
        ("edge", SITE.to_string(), &[("drop_tracking.wasm", "{}")]),
    ];
    for (name, base, plugins) in cases {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut outputs = Vec::new();
        let contracts = [
            ("0.3", env!("HASEED_PLUGIN_DIR")),
            ("0.2", env!("HASEED_PLUGIN_DIR_0_2")),
            ("0.1", env!("HASEED_PLUGIN_DIR_0_1")),
        ];
        for (contract, dir) in contracts {
            let dir = std::path::Path::new(dir);
            let mut text = base.clone();
            text.push_str(&plugin_entry(&plugin("apt_mirror.wasm"), Some(MIRROR)));
            for (file, settings) in plugins {
                let path = dir.join(file);
                assert!(
                    path.exists(),
                    "{} was not built (a release build of the tests needs HASEED_TEST_PLUGINS=1)",
                    path.display()
                );
                text.push_str(&plugin_entry(&path, Some(settings)));
            }
            let site = tmp.path().join(format!("site-{contract}.toml"));
            std::fs::write(&site, text).expect("write");
            let out = tmp.path().join(format!("out-{contract}"));
            let o = build(&site, &out);
            assert!(
                o.status.success(),
                "{name} with {contract} plugins: {}",
                stderr(&o)
            );
            outputs.push(tree(&out));
        }
        let files = |t: &[(String, Vec<u8>)]| t.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
        for (i, (contract, _)) in contracts.iter().enumerate().skip(1) {
            assert_eq!(
                files(&outputs[0]),
                files(&outputs[i]),
                "{name}: other files with {contract}"
            );
            for ((path, new), (_, old)) in outputs[0].iter().zip(&outputs[i]) {
                assert!(
                    new == old,
                    "{name}: {path} differs between the 0.3 and the {contract} build of {plugins:?}:\n--- 0.3\n{}\n--- {contract}\n{}",
                    String::from_utf8_lossy(new),
                    String::from_utf8_lossy(old)
                );
            }
        }
    }
    // What 0.1 could not express is really in these builds (else the comparison proves little).
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let site = site_with_plugins(
        tmp.path(),
        &[("apt_mirror.wasm", MIRROR), ("prefer_lb1.wasm", "{}")],
    );
    assert!(build(&site, &out).status.success());
    let lb = std::fs::read_to_string(out.join("lb1/user-data")).expect("user-data");
    assert!(lb.contains("http://mirror.lan/debian"), "{lb}");
}

/// Plugin files with their settings.
type Plugins<'a> = &'a [(&'a str, &'a str)];

/// plugins/apt-mirror's settings in the comparison above: a source on every node.
const MIRROR: &str =
    r#"{ name = "site-mirror", source = "deb http://mirror.lan/debian bookworm main" }"#;

/// `plugin inspect` says which contract a plugin speaks and how this host runs it.
#[test]
fn inspect_names_the_contract_and_the_adapter() {
    let old = std::path::Path::new(env!("HASEED_PLUGIN_DIR_0_1")).join("prefer_lb1.wasm");
    let o = run(&["plugin", "inspect", old.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("built for:    haseed:policy@0.1.0"), "{text}");
    assert!(
        text.contains("runs:         through the adapter 0.1.0 -> 0.3.0:"),
        "{text}"
    );
    assert!(
        text.contains("may change:   any field (it declares no change scope)"),
        "{text}"
    );
    let old = std::path::Path::new(env!("HASEED_PLUGIN_DIR_0_2")).join("prefer_lb1.wasm");
    let o = run(&["plugin", "inspect", old.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("built for:    haseed:policy@0.2.0"), "{text}");
    assert!(
        text.contains(
            "runs:         through the adapter 0.2.0 -> 0.3.0: it declares no change scope"
        ),
        "{text}"
    );
    let new = plugin("prefer_lb1.wasm");
    let o = run(&["plugin", "inspect", new.to_str().expect("utf-8")]);
    let text = stdout(&o);
    assert!(text.contains("built for:    haseed:policy@0.3.0"), "{text}");
    assert!(text.contains("runs:         native"), "{text}");
    assert!(
        text.contains(
            "may change:   keepalived.instances.state, keepalived.instances.priority, \
             keepalived.instances.nopreempt, haproxy.backends.servers.check.rise, \
             haproxy.backends.servers.check.fall"
        ),
        "{text}"
    );
}
