//! `--json` on every command: the whole of stdout is one JSON document, the versioned
//! envelope (`haseed`, `ok`, the command's fields, `warnings`, `errors`), on success and on
//! failure; a site's error comes with its file, line and column; exit codes as without it.
//! (`lab` needs root and network namespaces for a success: only its failure is here; `lab`
//! and `plugin test` successes are in tests/lab.rs and tests/plugin_cli.rs.)

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The envelope `o` printed: the whole of stdout parses as one JSON object with the header
/// of `command`, `ok` agreeing with the exit status, and both lists.
fn envelope(o: &Output, command: &str) -> serde_json::Value {
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{command}: stdout is not one JSON document ({e}):\n{}\nstderr:\n{}",
            stdout(o),
            stderr(o)
        )
    });
    assert!(doc.is_object(), "{command}: {doc}");
    assert_eq!(
        doc["haseed"],
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "schema": 1,
            "command": command,
            "contract": "0.3.0",
        }),
        "{command}: {doc}"
    );
    assert_eq!(doc["ok"], o.status.success(), "{command}: {doc}");
    assert!(doc["warnings"].is_array(), "{command}: {doc}");
    assert!(doc["errors"].is_array(), "{command}: {doc}");
    if o.status.success() {
        assert_eq!(doc["errors"], serde_json::json!([]), "{command}: {doc}");
    } else {
        assert!(
            !doc["errors"].as_array().expect("array").is_empty(),
            "{command}: a failure without errors: {doc}"
        );
    }
    for e in doc["errors"].as_array().expect("array") {
        assert!(e["message"].is_string(), "{command}: {e}");
    }
    doc
}

/// A site with one error the human output places at `LINE:COL` (two nodes named lb1),
/// copied into `dir`.
fn broken_site(dir: &Path) -> PathBuf {
    let site = dir.join("broken.toml");
    std::fs::copy(
        repo_root().join("tests/broken_inventories/duplicate-node-name.toml"),
        &site,
    )
    .expect("copy");
    site
}

/// The envelope of a run on [`broken_site`] fails with exit 1 and the error at 22:8 of that
/// file, the same place the text on stderr gives.
fn assert_site_error(o: &Output, command: &str, site: &Path) -> serde_json::Value {
    assert_eq!(o.status.code(), Some(1), "{command}: {}", stderr(o));
    let doc = envelope(o, command);
    let errors = doc["errors"].as_array().expect("array");
    assert_eq!(errors.len(), 1, "{command}: {doc}");
    let e = &errors[0];
    assert_eq!(e["file"], s(site), "{command}: {e}");
    assert_eq!(e["line"], 22, "{command}: {e}");
    assert_eq!(e["column"], 8, "{command}: {e}");
    assert!(
        e["message"]
            .as_str()
            .expect("message")
            .contains("duplicate node name"),
        "{command}: {e}"
    );
    assert!(
        stderr(o).contains(&format!("{}:22:8: error:", site.display())),
        "{command}: the text on stderr goes too: {}",
        stderr(o)
    );
    doc
}

#[test]
fn plan_json_is_the_envelope_with_the_site_and_every_plan() {
    let o = run(&["plan", s(&example("pi-k8s")), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc = envelope(&o, "plan");
    assert_eq!(doc["site"]["name"], "pi-k8s", "{doc}");
    let names: Vec<&str> = doc["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["lb1", "lb2", "master1", "master2", "master3"]);
    assert!(doc["nodes"][0]["plan"]["haproxy"].is_object(), "{doc}");
    // --format json is the same document.
    let o2 = run(&["plan", s(&example("pi-k8s")), "--format", "json"]);
    assert_eq!(o2.stdout, o.stdout);

    let tmp = tempfile::tempdir().expect("tempdir");
    let site = broken_site(tmp.path());
    let o = run(&["plan", s(&site), "--json"]);
    let doc = assert_site_error(&o, "plan", &site);
    assert_eq!(doc.get("nodes"), None, "{doc}");
}

/// A warning of the site (an empty key list, on purpose) moves from stderr into the envelope,
/// with its place.
#[test]
fn warnings_go_into_the_envelope() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(example("pi-k8s")).expect("example");
    let site = tmp.path().join("site.toml");
    let text = text.replacen(
        "[[node]]\nname = \"lb1\"\n",
        "[[node]]\nname = \"lb1\"\nssh_authorized_keys = []\n",
        1,
    );
    assert!(
        text.contains("ssh_authorized_keys = []"),
        "the example changed"
    );
    std::fs::write(&site, &text).expect("write");
    let line = text
        .lines()
        .position(|l| l == "ssh_authorized_keys = []")
        .expect("line")
        + 1;
    let o = run(&["plan", s(&site)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("warning:"), "{}", stderr(&o));

    let o = run(&["plan", s(&site), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc = envelope(&o, "plan");
    let w = doc["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .find(|w| w["file"] == s(&site))
        .unwrap_or_else(|| panic!("no located warning: {doc}"));
    assert_eq!(w["line"], line, "{w}");
    assert!(!stderr(&o).contains("warning:"), "{}", stderr(&o));
}

#[test]
fn build_json_lists_what_it_wrote() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let o = run(&["build", s(&example("pi-k8s")), "-o", s(&out), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc = envelope(&o, "build");
    assert_eq!(doc["site"], "pi-k8s");
    assert_eq!(doc["output"], s(&out));
    assert_eq!(doc["bundle"], s(&out.join("pi-k8s.tar.gz")));
    assert!(out.join("pi-k8s.tar.gz").is_file());
    let nodes = doc["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 5, "{doc}");
    for n in nodes {
        let dir = Path::new(n["dir"].as_str().expect("dir"));
        assert!(dir.join("user-data").is_file(), "{n}");
    }

    let site = broken_site(tmp.path());
    let out = tmp.path().join("out2");
    let o = run(&["build", s(&site), "-o", s(&out), "--json"]);
    assert_site_error(&o, "build", &site);
    assert!(!out.exists());
}

#[test]
fn validate_json_reports_a_site_error_first() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = broken_site(tmp.path());
    let o = run(&["validate", s(&site), "--json"]);
    assert_site_error(&o, "validate", &site);
}

/// Runs the real validators (keepalived's in a network namespace: root, as CI runs).
#[test]
fn validate_json_lists_every_check() {
    if !is_root() {
        eprintln!("skipped: keepalived -t runs in a network namespace (root)");
        return;
    }
    let o = run(&["validate", s(&example("pi-k8s")), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc = envelope(&o, "validate");
    let checks = doc["checks"].as_array().expect("checks");
    assert!(!checks.is_empty(), "{doc}");
    assert!(checks.iter().all(|c| c["ok"] == true), "{doc}");
    assert_eq!(doc["passed"], checks.len(), "{doc}");
    assert_eq!(doc["failed"], 0, "{doc}");
    for v in ["haproxy", "keepalived", "cloud-init"] {
        assert!(checks.iter().any(|c| c["validator"] == v), "{v}: {doc}");
    }
}

#[test]
fn user_data_json_says_what_it_wrote() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("lb1.user-data");
    let site = example("aws");
    let args = ["user-data", s(&site), "--stage", "production", "--node"];
    let o = run(&[&args[..], &["lb1", "-o", s(&file), "--json"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let doc = envelope(&o, "user-data");
    assert_eq!(doc["node"], "lb1");
    assert_eq!(doc["output"], s(&file));
    let written = std::fs::read(&file).expect("written");
    assert_eq!(doc["bytes"], written.len(), "{doc}");
    assert_eq!(doc["gzip"], written.starts_with(&[0x1f, 0x8b]), "{doc}");

    // No such node: an error naming the nodes there are.
    let o = run(&[&args[..], &["nobody", "-o", s(&file), "--json"]].concat());
    assert_eq!(o.status.code(), Some(1));
    let doc = envelope(&o, "user-data");
    let message = doc["errors"][0]["message"].as_str().expect("message");
    assert!(message.contains("no node named \"nobody\""), "{doc}");

    // The user-data and the envelope cannot share stdout.
    let o = run(&[&args[..], &["lb1", "-o", "-", "--json"]].concat());
    assert_eq!(o.status.code(), Some(1));
    let doc = envelope(&o, "user-data");
    assert!(
        doc["errors"][0]["message"]
            .as_str()
            .expect("message")
            .contains("both want stdout"),
        "{doc}"
    );

    let broken = broken_site(tmp.path());
    let o = run(&[
        "user-data",
        s(&broken),
        "--node",
        "lb1",
        "-o",
        s(&file),
        "--json",
    ]);
    assert_site_error(&o, "user-data", &broken);
}

#[test]
fn seed_json_says_what_it_wrote() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("lb1-seed.img");
    let site = example("pi-k8s");
    let o = run(&["seed", s(&site), "--node", "lb1", "-o", s(&out), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc = envelope(&o, "seed");
    assert_eq!(doc["node"], "lb1");
    assert_eq!(doc["output"], s(&out));
    assert_eq!(
        doc["bytes"],
        std::fs::metadata(&out).expect("written").len()
    );
    assert!(
        doc["instance_id"]
            .as_str()
            .expect("instance_id")
            .starts_with("haseed-"),
        "{doc}"
    );

    let broken = broken_site(tmp.path());
    let o = run(&["seed", s(&broken), "--node", "lb1", "-o", s(&out), "--json"]);
    assert_site_error(&o, "seed", &broken);
}

/// `flash` onto a plain file: refused without --force (before any work); with --force the
/// refusal becomes a warning, and the broken site stops it.
#[test]
fn flash_json_reports_a_refusal_and_a_site_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let card = tmp.path().join("card");
    std::fs::write(&card, b"not a card").expect("write");
    let base = tmp.path().join("missing-base.img.xz");
    let site = broken_site(tmp.path());
    let args = ["flash", s(&site), "--node", "lb1", "--base", s(&base)];
    let o = run(&[&args[..], &[s(&card), "--json"]].concat());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let doc = envelope(&o, "flash");
    assert!(
        doc["errors"][0]["message"]
            .as_str()
            .expect("message")
            .starts_with("refusing to flash"),
        "{doc}"
    );

    let o = run(&[&args[..], &[s(&card), "--force", "--json"]].concat());
    let doc = assert_site_error(&o, "flash", &site);
    assert!(
        doc["warnings"][0]["message"]
            .as_str()
            .expect("a --force warning")
            .starts_with("--force: "),
        "{doc}"
    );
    assert_eq!(std::fs::read(&card).expect("card"), b"not a card");
}

#[test]
fn image_json_reports_a_site_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = broken_site(tmp.path());
    let o = run(&[
        "image",
        s(&site),
        "--node",
        "lb1",
        "--base",
        s(&tmp.path().join("missing.img")),
        "-o",
        s(&tmp.path().join("lb1.img")),
        "--json",
    ]);
    assert_site_error(&o, "image", &site);
}

/// As root the broken site stops the lab before anything starts; elsewhere the lab refuses
/// to run at all. Either way: the envelope, not ok.
#[test]
fn lab_json_reports_a_failure() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = broken_site(tmp.path());
    let o = run(&["lab", s(&site), "--json"]);
    if is_root() {
        assert_site_error(&o, "lab", &site);
    } else {
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        envelope(&o, "lab");
    }
}

#[test]
fn plugin_inspect_json_is_the_envelope() {
    let file = plugin("prefer_lb1.wasm");
    let o = run(&["plugin", "inspect", s(&file), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc = envelope(&o, "plugin inspect");
    assert_eq!(doc["file"], s(&file));
    assert_eq!(doc["runnable"], true);
    assert_eq!(doc["info"]["name"], "prefer-lb1", "{doc}");
    assert_eq!(doc["sha256"], sha256_file(&file));

    let tmp = tempfile::tempdir().expect("tempdir");
    let junk = tmp.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm but not really").expect("write");
    let o = run(&["plugin", "inspect", s(&junk), "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    envelope(&o, "plugin inspect");
}

#[test]
fn plugin_check_json_lists_each_node() {
    let file = plugin("prefer_lb1.wasm");
    let site = example("pi-k8s");
    let o = run(&[
        "plugin",
        "check",
        s(&file),
        "--site",
        s(&site),
        "--settings",
        r#"{"prefer":"lb2"}"#,
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc = envelope(&o, "plugin check");
    assert_eq!(doc["changed_nodes"], 2, "{doc}");
    let nodes = doc["nodes"].as_array().expect("nodes");
    let lb2 = nodes.iter().find(|n| n["node"] == "lb2").expect("lb2");
    assert_eq!(lb2["changed"], true, "{lb2}");
    assert!(
        lb2["changed_files"]
            .as_array()
            .expect("files")
            .iter()
            .any(|f| f == "/etc/keepalived/keepalived.conf"),
        "{lb2}"
    );
    assert!(
        lb2["diff"]
            .as_str()
            .expect("diff")
            .contains("+    state MASTER"),
        "{lb2}"
    );
    let m1 = nodes.iter().find(|n| n["node"] == "master1").expect("m1");
    assert_eq!(m1["changed"], false, "{m1}");

    // A plugin that fails on the site: exit 1, each failure with its node, plugin and place.
    let o = run(&[
        "plugin",
        "check",
        s(&plugin("hostile_panic.wasm")),
        "--site",
        s(&site),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let doc = envelope(&o, "plugin check");
    let e = doc["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .find(|e| e["node"] == "lb1")
        .unwrap_or_else(|| panic!("no error on lb1: {doc}"));
    assert_eq!(e["file"], s(&site), "{e}");
    assert!(e["line"].as_u64().expect("line") > 1, "{e}");
    assert!(e["column"].is_u64(), "{e}");
    assert!(
        e["plugin"]
            .as_str()
            .expect("plugin")
            .contains("hostile_panic"),
        "{e}"
    );
}

#[test]
fn plugin_add_json_says_what_it_pinned() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = tmp.path().join("site.toml");
    std::fs::copy(example("pi-k8s"), &site).expect("copy");
    let file = plugin("prefer_lb1.wasm");
    let o = run(&[
        "plugin",
        "add",
        s(&file),
        "--site",
        s(&site),
        "--settings",
        r#"{"prefer":"lb1"}"#,
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc = envelope(&o, "plugin add");
    assert_eq!(doc["action"], "added", "{doc}");
    assert_eq!(doc["sha256"], sha256_file(&file));
    assert_eq!(doc["site"], s(&site));
    let text = std::fs::read_to_string(&site).expect("site");
    let path = doc["path"].as_str().expect("path");
    assert!(text.contains(&format!("path = \"{path}\"")), "{text}");

    // Not a JSON object: refused, the site untouched.
    let o = run(&[
        "plugin",
        "add",
        s(&file),
        "--site",
        s(&site),
        "--settings",
        "[1]",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1));
    envelope(&o, "plugin add");
    assert_eq!(std::fs::read_to_string(&site).expect("site"), text);

    // A broken site: the error at its place.
    let broken = broken_site(tmp.path());
    let o = run(&["plugin", "add", s(&file), "--site", s(&broken), "--json"]);
    assert_site_error(&o, "plugin add", &broken);
}

/// A command line clap refuses still gives a script JSON when it asked for it: the envelope
/// with `ok: false`, clap's error as the message and its usage as the help, clap's exit code
/// 2 and text on stderr. Without `--json` stdout stays empty; `--help` stays text.
#[test]
fn a_usage_error_with_json_is_the_envelope() {
    let o = run(&["build", "--json", "--no-such-flag", "site.toml"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let doc = envelope(&o, "build");
    let e = &doc["errors"][0];
    assert!(
        e["message"]
            .as_str()
            .expect("message")
            .contains("unexpected argument '--no-such-flag'"),
        "{doc}"
    );
    assert!(
        e["help"]
            .as_str()
            .expect("help")
            .contains("Usage: haseed build"),
        "{doc}"
    );
    assert!(stderr(&o).contains("--no-such-flag"), "{}", stderr(&o));

    // A missing argument of a nested command, and plan's --format json.
    let o = run(&["plugin", "inspect", "--json"]);
    assert_eq!(o.status.code(), Some(2));
    let doc = envelope(&o, "plugin inspect");
    assert!(
        doc["errors"][0]["message"]
            .as_str()
            .expect("message")
            .contains("<FILE>"),
        "{doc}"
    );
    let o = run(&["plan", "--format", "json", "site.toml", "--bogus"]);
    assert_eq!(o.status.code(), Some(2));
    envelope(&o, "plan");

    // No JSON asked: nothing on stdout. Help is text, even with --json.
    let o = run(&["build", "--no-such-flag", "site.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty(), "{}", stdout(&o));
    let o = run(&["build", "--json", "--help"]);
    assert!(o.status.success());
    assert!(
        stdout(&o).starts_with("Decide, check and render"),
        "{}",
        stdout(&o)
    );
}
