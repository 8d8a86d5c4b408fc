//! Hostile plugins (built from source in plugins/hostile/) must each end the
//! build with one clear error naming the plugin and the node, within the
//! per-call limits, and leave nothing written.

mod common;

use common::*;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Held by every test while its `haseed` runs plugins: each call has a 2 s wall-clock deadline,
/// and two hostile builds side by side on a loaded 2-core runner pushed the huge-result plugin
/// past it (refused by the deadline, not by the checker the test is about). The file takes ~4 s
/// in all, so running its builds one at a time costs little.
static ONE_BUILD_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    // A failed test poisons the lock; the others still run one at a time.
    ONE_BUILD_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Outcome {
    ok: bool,
    stderr: String,
    elapsed: Duration,
    wrote: bool,
}

fn build_with(plugin_file: &str) -> Outcome {
    let _turn = one_at_a_time();
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = site_with_plugins(tmp.path(), &[(plugin_file, "{}")]);
    let out = tmp.path().join("out");
    let started = Instant::now();
    let o = build(&site, &out);
    Outcome {
        ok: o.status.success(),
        stderr: stderr(&o),
        elapsed: started.elapsed(),
        wrote: out.exists()
            || std::fs::read_dir(tmp.path()).expect("tmp").any(|e| {
                e.expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".haseed")
            }),
    }
}

fn assert_refused(o: &Outcome, plugin_file: &str, cause: &str) {
    assert!(!o.ok, "the build succeeded with {plugin_file}");
    assert!(!o.wrote, "something was written after {plugin_file} failed");
    let line = o
        .stderr
        .lines()
        .find(|l| l.contains("error"))
        .unwrap_or_else(|| panic!("no error line:\n{}", o.stderr));
    assert!(
        line.contains(&format!("plugin {}", plugin(plugin_file).display())),
        "error does not name the plugin: {line}"
    );
    assert!(
        line.contains("node lb1"),
        "error does not name the node: {line}"
    );
    assert!(
        line.to_lowercase().contains(cause),
        "error does not say {cause:?}: {line}\n{}",
        o.stderr
    );
    assert!(
        line.contains("site.toml:"),
        "error does not point into the site file: {line}"
    );
}

#[test]
fn endless_loop_is_stopped_by_fuel_or_the_deadline() {
    let o = build_with("hostile_endless_loop.wasm");
    assert!(!o.ok);
    let lower = o.stderr.to_lowercase();
    assert!(
        lower.contains("fuel") || lower.contains("time limit"),
        "{}",
        o.stderr
    );
    assert_refused(
        &o,
        "hostile_endless_loop.wasm",
        if lower.contains("fuel") {
            "fuel"
        } else {
            "time limit"
        },
    );
    // Per call 2 s at most, plus start-up and compilation.
    assert!(o.elapsed < Duration::from_secs(20), "took {:?}", o.elapsed);
}

#[test]
fn memory_bomb_hits_the_cap() {
    let o = build_with("hostile_memory_bomb.wasm");
    assert_refused(&o, "hostile_memory_bomb.wasm", "memory");
}

#[test]
fn panic_becomes_one_error() {
    let o = build_with("hostile_panic.wasm");
    assert_refused(&o, "hostile_panic.wasm", "panic");
    // The panic message itself reaches the log, prefixed with the plugin.
    assert!(
        o.stderr.contains("hostile plugin panicked on purpose"),
        "{}",
        o.stderr
    );
    // The error names the guest's language and the panic's place and message; the advice
    // to set RUST_BACKTRACE, useless for a wasm guest, is dropped.
    assert!(o.stderr.contains("a Rust panic at "), "{}", o.stderr);
    assert!(!o.stderr.contains("RUST_BACKTRACE"), "{}", o.stderr);
}

#[test]
fn injected_newline_never_reaches_a_config_file() {
    let o = build_with("hostile_inject_newline.wasm");
    assert_refused(&o, "hostile_inject_newline.wasm", "checker rejects");
    assert!(o.stderr.contains("servers[0].name"), "{}", o.stderr);
}

#[test]
fn tampered_plugin_is_refused_before_it_runs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = site_with_plugins(tmp.path(), &[("prefer_lb1.wasm", "{}")]);
    let text = std::fs::read_to_string(&site).expect("site");
    let digest = sha256_file(&plugin("prefer_lb1.wasm"));
    let wrong = format!(
        "{}{}",
        &digest[..63],
        if digest.ends_with('0') { '1' } else { '0' }
    );
    std::fs::write(&site, text.replace(&digest, &wrong)).expect("write");
    let o = run(&["plan", site.to_str().expect("utf-8")]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("sha256 mismatch"), "{err}");
    assert!(err.contains(&digest) && err.contains(&wrong), "{err}");
    assert!(err.contains("site.toml:"), "{err}");
}

#[test]
fn bad_settings_are_reported_before_any_node_is_decided() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = site_with_plugins(
        tmp.path(),
        &[("prefer_lb1.wasm", r#"{ prefer = "nosuchnode" }"#)],
    );
    let o = run(&["plan", site.to_str().expect("utf-8")]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("nosuchnode"), "{err}");
    // It points at the setting's key in the entry's settings and names it
    // once (the plugin's message starts with it).
    let text = std::fs::read_to_string(&site).expect("site");
    let line = text
        .lines()
        .position(|l| l.starts_with("settings = { prefer"))
        .expect("the settings line")
        + 1;
    assert!(
        err.contains(&format!("site.toml:{line}:14: error:"))
            && err.contains("rejected its settings: prefer: no node named nosuchnode"),
        "{err}"
    );
    assert!(
        !err.contains("node lb1"),
        "settings error attributed to a node: {err}"
    );
}

#[test]
fn deep_recursion_overflows_its_stack_not_ours() {
    let o = build_with("hostile_deep_recursion.wasm");
    assert_refused(&o, "hostile_deep_recursion.wasm", "stack");
    assert!(o.elapsed < Duration::from_secs(20), "took {:?}", o.elapsed);
}

#[test]
fn huge_result_is_refused_by_the_checker() {
    // A 50 MB hostname and 2,000,000 packages: the memory cap bounds what
    // the plugin can build, the checker refuses the sizes.
    let o = build_with("hostile_huge_result.wasm");
    assert_refused(&o, "hostile_huge_result.wasm", "checker rejects");
    assert!(
        o.stderr.contains("packages: 2000000 entries; at most 1000"),
        "{}",
        o.stderr
    );
    // The hostname is shown cut short, never whole.
    let longest = o.stderr.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 4096, "a {longest}-byte line reached the log");
    assert!(o.elapsed < Duration::from_secs(20), "took {:?}", o.elapsed);
}

#[test]
fn out_of_range_numbers_are_refused() {
    let o = build_with("hostile_out_of_range.wasm");
    assert_refused(&o, "hostile_out_of_range.wasm", "checker rejects");
    for field in [
        "haproxy.frontends[0].port_first: port 0 is not a port",
        "keepalived.instances[0].priority: 255 is out of range 1..=254",
        "keepalived.instances[0].vrrp_version: VRRP version 9",
    ] {
        assert!(o.stderr.contains(field), "no {field:?} in:\n{}", o.stderr);
    }
}

/// A decision that changes a field outside the plugin's declared change scope is refused
/// (issue 22 item 3): hostile-scope-liar declares keepalived priorities, nudges them, and
/// also sets haproxy's maxconn to 1, a plan the checker and haproxy accept.
#[test]
fn a_change_outside_the_declared_scope_is_refused() {
    let o = build_with("hostile_scope_liar.wasm");
    assert_refused(&o, "hostile_scope_liar.wasm", "outside its change scope");
    assert!(
        o.stderr.contains(
            "changed haproxy.global.maxconn, outside its change scope \
             (it declares: keepalived.instances.priority)"
        ),
        "{}",
        o.stderr
    );
    assert!(
        !o.stderr.contains("changed keepalived.instances.priority"),
        "the declared change is granted:\n{}",
        o.stderr
    );
}

#[test]
fn duplicate_backend_is_refused() {
    let o = build_with("hostile_duplicate_names.wasm");
    assert_refused(&o, "hostile_duplicate_names.wasm", "duplicate");
    // The default policy's backends: the service's, then its loopback
    // monitor (failover); the plugin's copy comes third.
    assert!(
        o.stderr.contains("haproxy.backends[2].name"),
        "{}",
        o.stderr
    );
}

/// The warnings `hostile-reads-world` left on node lb1, from `haseed plan --json`.
fn world_seen_by_lb1(site: &std::path::Path) -> Vec<String> {
    let o = run(&["plan", site.to_str().expect("utf-8"), "--json"]);
    assert!(o.status.success(), "plan failed: {}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let lb1 = doc["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["name"] == "lb1")
        .expect("lb1");
    lb1["plan"]["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .map(|w| w.as_str().expect("string").to_string())
        .collect()
}

#[test]
fn the_world_is_hidden_and_two_builds_are_identical() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = site_with_plugins(tmp.path(), &[("hostile_reads_world.wasm", "{}")]);
    let _turn = one_at_a_time();

    let first = world_seen_by_lb1(&site);
    let second = world_seen_by_lb1(&site);
    let seen = |prefix: &str| -> String {
        first
            .iter()
            .find(|w| w.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} warning in {first:?}"))
            .clone()
    };
    assert_eq!(seen("fs: "), "fs: denied", "{first:?}");
    assert_eq!(seen("env: "), "env: 0 vars", "{first:?}");
    assert_eq!(seen("args: "), "args: 0", "{first:?}");
    assert_eq!(seen("net: "), "net: denied", "{first:?}");
    assert_eq!(seen("clock: "), "clock: 946684800", "{first:?}");
    let random = seen("random: ");
    let hex = random.trim_start_matches("random: ");
    assert!(
        hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "{random}"
    );
    // Same clock, same "random" bytes, same everything: two runs agree.
    assert_eq!(first, second);

    let mut trees = Vec::new();
    for out in ["out1", "out2"] {
        let out = tmp.path().join(out);
        let o = build(&site, &out);
        assert!(o.status.success(), "build failed: {}", stderr(&o));
        // The plugin's warnings reach the user but do not fail the build.
        assert!(stderr(&o).contains("net: denied"), "{}", stderr(&o));
        trees.push(tree(&out));
    }
    assert!(!trees[0].is_empty());
    assert!(
        trees[0] == trees[1],
        "two builds with hostile-reads-world differ"
    );
}

/// Characters a terminal acts on: ESC, the 8-bit CSI, BEL, CR, DEL, the bidi overrides,
/// isolates and marks, the line and paragraph separators. Listed here, not taken from
/// haseed's own `term`, so the test does not grade the escaping with itself.
const TERMINAL_ACTIVE: &[char] = &[
    '\u{1b}', '\u{9b}', '\u{7}', '\r', '\u{7f}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}',
    '\u{202e}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{200e}', '\u{200f}', '\u{61c}',
    '\u{2028}', '\u{2029}',
];

fn assert_terminal_safe(what: &str, text: &str) {
    let found: Vec<char> = text
        .chars()
        .filter(|c| TERMINAL_ACTIVE.contains(c))
        .collect();
    assert!(
        found.is_empty(),
        "{what} printed {found:?} raw:\n{}",
        text.escape_debug()
    );
}

#[test]
fn terminal_escapes_and_bidi_controls_from_a_plugin_are_printed_escaped() {
    const WARNING: &str = "reversed: \u{202e}exe.txt\u{202c} isolated: \u{2066}x\u{2069} marks: \u{200e}\u{200f}\u{61c}";
    const BANNER: &str =
        "\u{1b}[2J\u{1b}]0;owned\u{7}\u{9b}1m \u{202e}desrever\u{202c}\u{2028}\r\n";
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = site_with_plugins(tmp.path(), &[("hostile_terminal_escapes.wasm", "{}")]);
    let _turn = one_at_a_time();
    let site_arg = site.to_str().expect("utf-8");

    // build: the warning and both log streams reach stderr, escaped but readable.
    let out = tmp.path().join("out");
    let o = build(&site, &out);
    let err = stderr(&o);
    assert!(o.status.success(), "build failed:\n{err}");
    assert_terminal_safe("build (stderr)", &err);
    assert_terminal_safe("build (stdout)", &stdout(&o));
    for shown in [
        "warning: node lb1: reversed: \\u{202e}exe.txt\\u{202c} isolated: \\u{2066}x\\u{2069} marks: \\u{200e}\\u{200f}\\u{61c}",
        "\\u{202e}desrever\\u{202c} one\\u{2028}two",
        "stderr: \\u{2066}isolate\\u{2069} \\u{200f}mark \\u{2029}para",
    ] {
        assert!(err.contains(shown), "no {shown:?} in:\n{err}");
    }
    // The artifact keeps the bytes: escaping is for the terminal only.
    let banner = std::fs::read_to_string(out.join("lb1/files/etc/haseed/banner")).expect("banner");
    assert_eq!(banner, BANNER);

    // plan --json: no raw character, and the JSON still decodes to exactly what was sent.
    let o = run(&["plan", site_arg, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let json = stdout(&o);
    assert_terminal_safe("plan --json", &json);
    assert_terminal_safe("plan --json (stderr)", &stderr(&o));
    let doc: serde_json::Value = serde_json::from_str(&json).expect("json");
    let lb1 = &doc["nodes"][0];
    assert_eq!(lb1["name"], "lb1");
    let warnings = lb1["plan"]["warnings"].as_array().expect("warnings");
    assert!(warnings.iter().any(|w| w == WARNING), "{warnings:?}");
    let files = lb1["plan"]["files"].as_array().expect("files");
    assert!(
        files
            .iter()
            .any(|f| f["path"] == "/etc/haseed/banner" && f["content"] == BANNER),
        "{files:?}"
    );

    // plugin check: a diff of the plan and of the file.
    let bare = tmp.path().join("bare.toml");
    std::fs::copy(example("pi-k8s"), &bare).expect("copy");
    let escapes = plugin("hostile_terminal_escapes.wasm");
    let o = run(&[
        "plugin",
        "check",
        escapes.to_str().expect("utf-8"),
        "--site",
        bare.to_str().expect("utf-8"),
    ]);
    let shown = stdout(&o);
    assert!(o.status.success(), "{}\n{}", stderr(&o), shown);
    assert_terminal_safe("plugin check", &shown);
    assert_terminal_safe("plugin check (stderr)", &stderr(&o));
    assert!(
        shown.contains(
            "+\\u{1b}[2J\\u{1b}]0;owned\\u{7}\\u{9b}1m \\u{202e}desrever\\u{202c}\\u{2028}\\u{d}"
        ),
        "{shown}"
    );
}
