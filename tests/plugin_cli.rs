//! `haseed plugin inspect` and `haseed plugin add` on plugins built from source.

mod common;

use common::*;

#[test]
fn inspect_reports_contract_metadata_and_runnability() {
    let file = plugin("prefer_lb1.wasm");
    let o = run(&["plugin", "inspect", file.to_str().expect("utf-8"), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(doc["wit_package"], "haseed:policy@0.3.0");
    assert_eq!(doc["host_wit_package"], "haseed:policy@0.3.0");
    assert_eq!(doc["runs"], "native");
    assert_eq!(doc["info"]["scope"][1], "keepalived.instances.priority");
    assert_eq!(doc["runnable"], true);
    assert_eq!(doc["info"]["name"], "prefer-lb1");
    assert!(doc["info"]["settings_help"]
        .as_str()
        .expect("help")
        .contains("prefer"));
    assert_eq!(doc["sha256"], sha256_file(&file));
    let imports: Vec<&str> = doc["imports"]
        .as_array()
        .expect("imports")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        imports.iter().any(|i| i.starts_with("haseed:policy/site@")),
        "{imports:?}"
    );
    assert!(
        !imports.iter().any(|i| i.starts_with("wasi:sockets")),
        "{imports:?}"
    );

    // Something that is not a component: a clear refusal, non-zero exit.
    let o = run(&[
        "plugin",
        "inspect",
        example("pi-k8s").to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not a WebAssembly file"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn add_pins_a_plugin_after_proving_it_accepts_its_settings() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = tmp.path().join("site.toml");
    std::fs::copy(example("pi-k8s"), &site).expect("copy");
    std::fs::create_dir(tmp.path().join("policies")).expect("mkdir");
    let file = tmp.path().join("policies/prefer.wasm");
    std::fs::copy(plugin("prefer_lb1.wasm"), &file).expect("copy");
    let before = std::fs::read_to_string(&site).expect("site");

    // Bad settings: refused, the site file untouched.
    let o = run(&[
        "plugin",
        "add",
        file.to_str().expect("utf-8"),
        "--site",
        site.to_str().expect("utf-8"),
        "--settings",
        r#"{"prefer":"nosuch"}"#,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no node named nosuch"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read_to_string(&site).expect("site"), before);

    let o = run(&[
        "plugin",
        "add",
        file.to_str().expect("utf-8"),
        "--site",
        site.to_str().expect("utf-8"),
        "--settings",
        r#"{"prefer":"lb2"}"#,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let after = std::fs::read_to_string(&site).expect("site");
    assert!(
        after.starts_with(&before),
        "the existing text (comments included) changed"
    );
    assert!(after.contains("path = \"policies/prefer.wasm\""), "{after}");
    assert!(
        after.contains(&format!("sha256 = \"{}\"", sha256_file(&file))),
        "{after}"
    );
    let o = run(&["plan", site.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o)
            .lines()
            .any(|l| l.starts_with("lb2") && l.contains("MASTER/150")),
        "{}",
        stdout(&o)
    );

    // Adding again after a rebuild updates the pin instead of adding a second entry.
    let mut bytes = std::fs::read(&file).expect("wasm");
    bytes.extend_from_slice(&[0, 0x03, 0x01, b'x', 0]); // a custom section: new digest, same code
    std::fs::write(&file, &bytes).expect("write");
    let o = run(&[
        "plugin",
        "add",
        file.to_str().expect("utf-8"),
        "--site",
        site.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let again = std::fs::read_to_string(&site).expect("site");
    assert_eq!(again.matches("[[plugin]]").count(), 1, "{again}");
    assert!(again.contains(&sha256_file(&file)), "{again}");
    assert!(
        again.contains("prefer = \"lb2\""),
        "settings were lost: {again}"
    );
}

/// `plugin add` writes the plugin's declared change scope into its entry and shows it; a site
/// that narrows it by hand refuses the plugin's wider changes until `plugin add` grants them
/// again, saying what widens. A plugin that declares no scope is added with a warning and no
/// `scope` key (issue 22 item 3).
#[test]
fn add_writes_the_grant_and_warns_when_none_is_declared() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = tmp.path().join("site.toml");
    std::fs::copy(example("pi-k8s"), &site).expect("copy");
    let add = |file: &std::path::Path| {
        run(&[
            "plugin",
            "add",
            file.to_str().expect("utf-8"),
            "--site",
            site.to_str().expect("utf-8"),
        ])
    };
    let file = plugin("drop_tracking.wasm");
    let o = add(&file);
    assert!(o.status.success(), "{}", stderr(&o));
    let tracking = "keepalived.instances.track-scripts, keepalived.instances.track-files, \
                    keepalived.scripts, keepalived.track-files";
    assert!(
        stderr(&o).contains(&format!("  may change: {tracking}")),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    let text = std::fs::read_to_string(&site).expect("site");
    let granted = r#"scope = ["keepalived.instances.track-scripts", "keepalived.instances.track-files", "keepalived.scripts", "keepalived.track-files"]"#;
    assert!(text.contains(granted), "{text}");

    // Narrowed by hand: the plugin's changes are refused; added again, the grant widens.
    let narrowed = text.replace(granted, r#"scope = ["keepalived.scripts"]"#);
    std::fs::write(&site, narrowed).expect("write");
    let o = run(&["plan", site.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("node lb1: changed keepalived.instances.track-files, outside its change scope (its [[plugin]] entry in the site grants: keepalived.scripts)"),
        "{}",
        stderr(&o)
    );
    // plugin check holds the plugin to the site's entry as well.
    let o = plugin_check(&file, &site, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("outside its change scope (its [[plugin]] entry in the site grants: keepalived.scripts)"),
        "{}",
        stderr(&o)
    );
    let o = add(&file);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "  the grant widens: keepalived.instances.track-scripts, \
             keepalived.instances.track-files, keepalived.track-files \
             (the site's scope said keepalived.scripts)"
        ),
        "{}",
        stderr(&o)
    );
    assert!(std::fs::read_to_string(&site)
        .expect("site")
        .contains(granted));
    assert!(run(&["plan", site.to_str().expect("utf-8")])
        .status
        .success());

    // A plugin built against 0.2.0 declares nothing: added, with a warning and no scope key.
    let site_text = std::fs::read_to_string(example("pi-k8s")).expect("example");
    std::fs::write(&site, site_text).expect("write");
    let old = std::path::Path::new(env!("HASEED_PLUGIN_DIR_0_2")).join("prefer_lb1.wasm");
    let o = add(&old);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("may change: any field (it declares no change scope)"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("declares no change scope: it may change any field of any node's plan"),
        "{}",
        stderr(&o)
    );
    let text = std::fs::read_to_string(&site).expect("site");
    assert!(
        text.contains("[[plugin]]") && !text.contains("scope"),
        "{text}"
    );
}

/// Pins travel with the site (a path relative to the site file, even outside its folder), and
/// the same plugin is never pinned twice by accident: `plugin add` updates the entry that names
/// the same file or the same bytes, and a hand-made second pin is an error at its line unless
/// it says `allow_repeat = true` (issue 22 item 4).
#[test]
fn pins_travel_and_are_never_doubled() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (site_dir, build_dir) = (tmp.path().join("a/site"), tmp.path().join("a/build"));
    std::fs::create_dir_all(&site_dir).expect("mkdir");
    std::fs::create_dir_all(&build_dir).expect("mkdir");
    std::fs::copy(example("pi-k8s"), site_dir.join("site.toml")).expect("copy");
    std::fs::copy(plugin("prefer_lb1.wasm"), build_dir.join("prefer.wasm")).expect("copy");
    let add = |file: &std::path::Path, site: &std::path::Path| {
        let o = run(&[
            "plugin",
            "add",
            file.to_str().expect("utf-8"),
            "--site",
            site.to_str().expect("utf-8"),
            "--settings",
            r#"{"prefer":"lb2"}"#,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    add(&build_dir.join("prefer.wasm"), &site_dir.join("site.toml"));
    let text = std::fs::read_to_string(site_dir.join("site.toml")).expect("site");
    assert!(text.contains("path = \"../build/prefer.wasm\""), "{text}");

    // The site and its plugin move together.
    std::fs::rename(tmp.path().join("a"), tmp.path().join("b")).expect("move");
    let site = tmp.path().join("b/site/site.toml");
    let o = run(&["plan", site.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", stderr(&o));

    // The same file by another spelling, then the same bytes under another name: one entry.
    add(&tmp.path().join("b/site/../build/prefer.wasm"), &site);
    let copy = tmp.path().join("b/other/prefer-copy.wasm");
    std::fs::create_dir_all(copy.parent().expect("parent")).expect("mkdir");
    std::fs::copy(tmp.path().join("b/build/prefer.wasm"), &copy).expect("copy");
    add(&copy, &site);
    let text = std::fs::read_to_string(&site).expect("site");
    assert_eq!(text.matches("[[plugin]]").count(), 1, "{text}");
    assert!(
        text.contains("path = \"../other/prefer-copy.wasm\""),
        "{text}"
    );

    // A second pin of the same component by hand: an error at its sha256, naming the first.
    let digest = sha256_file(&copy);
    let doubled =
        format!("{text}\n[[plugin]]\npath = \"../build/prefer.wasm\"\nsha256 = \"{digest}\"\n");
    std::fs::write(&site, &doubled).expect("write");
    let o = run(&["plan", site.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    let line = doubled.lines().count();
    assert!(
        err.contains(&format!(
            "site.toml:{line}:10: error: this [[plugin]] pins the same component as an earlier one: it would run twice"
        )),
        "{err}"
    );
    assert!(err.contains("first pinned here"), "{err}");
    // ...unless the second entry says so.
    std::fs::write(&site, format!("{doubled}allow_repeat = true\n")).expect("write");
    let o = run(&["plan", site.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn check_shows_what_a_plugin_changes_per_node() {
    let file = plugin("prefer_lb1.wasm");
    let site = example("pi-k8s");
    let o = plugin_check(&file, &site, &["--settings", r#"{"prefer":"lb2"}"#]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("~ node lb2:") && out.contains("~ node lb1:"),
        "{out}"
    );
    assert!(out.contains("= node master1: unchanged"), "{out}");
    // lb2's keepalived.conf diff shows the preemptive MASTER.
    let lb2 = &out[out.find("~ node lb2:").expect("lb2")..];
    assert!(
        lb2.contains("+    state MASTER") && lb2.contains("-    nopreempt"),
        "{lb2}"
    );
    assert!(lb2.contains("+    priority 150"), "{lb2}");
    assert!(out.contains("changed 2 of 5 node(s)"), "{out}");
    // Its log reaches the user.
    assert!(
        stderr(&o).contains("prefer-lb1: lb2: master"),
        "{}",
        stderr(&o)
    );

    // --node narrows the report.
    let o = plugin_check(&file, &site, &["--node", "master1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("= node master1: unchanged"), "{out}");
    assert!(
        !out.contains("node lb1") && out.contains("changed 0 of 1 node(s)"),
        "{out}"
    );

    // A plugin that fails on the site: non-zero exit, the error names the node.
    let o = plugin_check(&plugin("hostile_panic.wasm"), &site, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("FAILED"), "{}", stdout(&o));
    assert!(stderr(&o).contains("node lb1"), "{}", stderr(&o));
}

/// `plugin new` makes a project that builds with plain cargo for
/// wasm32-wasip2, passes its own test, and runs in this host.
#[test]
fn new_project_builds_and_runs_in_the_host() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let project = tmp.path().join("tune-checks");
    let o = run(&[
        "plugin",
        "new",
        "tune-checks",
        "--dir",
        project.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let wit = std::fs::read_to_string(project.join("wit/policy.wit")).expect("wit copied");
    assert!(wit.contains("package haseed:policy@0.3.0;"));
    let manifest = std::fs::read_to_string(project.join("Cargo.toml")).expect("manifest");
    assert!(
        manifest.contains("[package.metadata.component]"),
        "cargo-component metadata"
    );

    // Share compiled dependencies between runs of this test.
    let target = repo_root().join("target/plugin-new-test");
    let cargo = |args: &[&str]| {
        let mut cmd = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()));
        cmd.args(args)
            .current_dir(&project)
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET");
        let o = cmd.output().expect("cargo runs");
        assert!(o.status.success(), "cargo {args:?}:\n{}", stderr(&o));
        o
    };
    let tested = cargo(&["test", "--quiet"]);
    assert!(stdout(&tested).contains("1 passed"), "{}", stdout(&tested));
    cargo(&["build", "--release", "--target", "wasm32-wasip2"]);
    let wasm = target.join("wasm32-wasip2/release/tune_checks.wasm");

    let o = run(&["plugin", "inspect", wasm.to_str().expect("utf-8"), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(doc["info"]["name"], "tune-checks");
    assert_eq!(doc["runnable"], true);

    assert_tunes_lb1_checks(&wasm, 5);
    assert_scaffold_fixture_passes(&wasm, &project);

    // The template's change scope is enforced (issue 22 item 3): without `rise` in it, tuning
    // rise is refused; a path the host does not know is refused before any node is decided.
    let lib = project.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).expect("lib.rs");
    for (from, to, says) in [
        (
            "\"haproxy.backends.servers.check.rise\".into(),",
            "",
            "node lb1: changed haproxy.backends.servers.check.rise, outside its change scope (it declares: haproxy.backends.servers.check.fall, haproxy.backends.servers.check.inter-ms)",
        ),
        (
            "\"haproxy.backends.servers.check.inter-ms\".into(),",
            "\"haproxy.servers.inter-ms\".into(),",
            "declares a change scope this host cannot enforce: \"haproxy.servers.inter-ms\" is not a plan field path (did you mean haproxy.backends.servers.check.inter-ms?",
        ),
    ] {
        assert!(source.contains(from), "{from} not in the template");
        std::fs::write(&lib, source.replacen(from, to, 1)).expect("write lib.rs");
        cargo(&["build", "--release", "--target", "wasm32-wasip2"]);
        let o = plugin_check(&wasm, &example("pi-k8s"), &["--settings", r#"{"rise": 5}"#]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(stderr(&o).contains(says), "{}", stderr(&o));
    }
}

/// `plugin new --lang python` makes a project componentize-py turns into a
/// component this host runs.
#[test]
fn new_python_project_builds_and_runs_in_the_host() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let project = tmp.path().join("py-tune");
    let o = run(&[
        "plugin",
        "new",
        "py-tune",
        "--lang",
        "python",
        "--dir",
        project.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // A test-only line: rise 99 raises an uncaught exception in decide().
    let policy_py = project.join("policy.py");
    let text = std::fs::read_to_string(&policy_py).expect("policy.py");
    let marker = "    def decide(self, node, proposed):\n";
    assert!(text.contains(marker), "{text}");
    std::fs::write(
        &policy_py,
        text.replacen(
            marker,
            &format!("{marker}        if self.settings.get(\"rise\") == 99:\n            {{}}[\"no-such-key\"]\n"),
            1,
        ),
    )
    .expect("write policy.py");
    componentize_py(
        &project.join("wit"),
        &project,
        &project.join("py_tune.wasm"),
    );
    let wasm = project.join("py_tune.wasm");

    // First use in a fresh cache: one line says it is compiling, one how long it took.
    let cache = tmp.path().join("cache");
    let check = |rise: u32| {
        run(&[
            "--cache-dir",
            cache.to_str().expect("utf-8"),
            "plugin",
            "check",
            wasm.to_str().expect("utf-8"),
            "--site",
            example("pi-k8s").to_str().expect("utf-8"),
            "--settings",
            &format!(r#"{{"rise": {rise}}}"#),
            "--node",
            "lb1",
        ])
    };
    let o = check(4);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("compiling plugin ")
            && err.contains("py_tune.wasm (")
            && err.contains("for this machine: first use, cached afterwards"),
        "{err}"
    );
    assert!(
        err.contains("compiled plugin ") && err.contains(" s\n"),
        "{err}"
    );
    assert_tunes_lb1_checks(&wasm, 4);

    // A Python exception is named as one, with the exception line, not as a Rust panic;
    // no RUST_BACKTRACE advice; the plugin comes from the cache this time, silently.
    let o = check(99);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(
            "node lb1: raised a Python exception: KeyError: 'no-such-key' (its traceback is above)"
        ),
        "{err}"
    );
    assert!(err.contains("Traceback (most recent call last):"), "{err}");
    assert!(!err.contains("RUST_BACKTRACE"), "{err}");
    assert!(!err.contains("Rust plugin panicked"), "{err}");
    assert!(!err.contains("compiling plugin"), "{err}");
    assert_scaffold_fixture_passes(&wasm, &project);
}

/// `plugin new` scaffolds one passing fixture, which `plugin test` finds in ./fixtures.
fn assert_scaffold_fixture_passes(wasm: &std::path::Path, project: &std::path::Path) {
    let o = haseed()
        .current_dir(project)
        .args(["plugin", "test", wasm.to_str().expect("utf-8")])
        .output()
        .expect("haseed runs");
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("ok    tunes-checks\n"), "{out}");
    assert!(out.contains(": 1 passed, 0 failed"), "{out}");
}

/// `plugin test` reports every unmet expectation of every fixture, with a diff for a file,
/// in text, JSON and JUnit XML, and exits 1.
#[test]
fn plugin_test_reports_each_failure() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let site = example("pi-k8s");
    let site = site.to_str().expect("utf-8");
    let fixture = |name: &str, body: &str| {
        std::fs::write(dir.join(name), format!("site = {site:?}\n{body}")).expect("write")
    };
    fixture(
        "a-passes.toml",
        "settings = { prefer = \"lb2\" }\n[[expect]]\nnode = \"lb2\"\nplan = \"/keepalived/instances/0/priority\"\nequals = 150\n",
    );
    fixture(
        "b-wrong.toml",
        "settings = { prefer = \"lb2\" }\n\
         [[expect]]\nnode = \"lb2\"\nplan = \"/keepalived/instances/0/priority\"\nequals = 99\n\
         [[expect]]\nnode = \"lb9\"\nplan = \"/hostname\"\nequals = \"x\"\n\
         [[expect]]\nnode = \"lb1\"\nplan = \"/no/such/field\"\nequals = 1\n\
         [[expect]]\nnode = \"lb1\"\nfile = \"/etc/haproxy/haproxy.cfg\"\nequals_file = \"expected.cfg\"\n\
         [[expect]]\nnode = \"lb1\"\nfile = \"/etc/nothing\"\ncontains = \"x\"\n",
    );
    std::fs::write(dir.join("expected.cfg"), "global\n    maxconn 1\n").expect("write");
    fixture("c-no-error.toml", "[error]\ncontains = \"boom\"\n");
    fixture("d-typo.toml", "setings = {}\n[error]\ncontains = \"x\"\n");
    let wasm = plugin("prefer_lb1.wasm");
    // A site that pins the plugin with a narrower scope holds it to that scope.
    let mut pinned = std::fs::read_to_string(example("pi-k8s")).expect("example");
    pinned.push_str(&plugin_entry(&wasm, None));
    pinned.push_str("scope = [\"keepalived.instances.priority\"]\n");
    std::fs::write(dir.join("pinned.toml"), pinned).expect("write");
    std::fs::write(
        dir.join("e-pinned.toml"),
        "site = \"pinned.toml\"\nsettings = { prefer = \"lb2\" }\n[error]\nnode = \"lb1\"\n\
         contains = \"changed keepalived.instances.nopreempt, outside its change scope \
         (its [[plugin]] entry in the site grants: keepalived.instances.priority)\"\n",
    )
    .expect("write");
    let junit = dir.join("junit.xml");
    let o = run(&[
        "plugin",
        "test",
        wasm.to_str().expect("utf-8"),
        dir.to_str().expect("utf-8"),
        "--junit",
        junit.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    for want in [
        "ok    a-passes\n",
        "FAIL  b-wrong (",
        "expect[0] (node lb2): /keepalived/instances/0/priority is 150, expected 99",
        "expect[1] (node lb9): the site has no node lb9",
        "expect[2] (node lb1): the plan has nothing at /no/such/field",
        "expect[3] (node lb1): /etc/haproxy/haproxy.cfg differs from ",
        "-    maxconn 1",
        "+    timeout client 3600000ms",
        "expect[4] (node lb1): the node has no file /etc/nothing",
        "FAIL  c-no-error (",
        "expected an error containing \"boom\", but the site planned",
        "FAIL  d-typo (",
        "unknown field `setings`",
        "ok    e-pinned\n",
        ": 2 passed, 3 failed (",
    ] {
        assert!(out.contains(want), "lacks {want:?}:\n{out}");
    }
    let xml = std::fs::read_to_string(&junit).expect("junit");
    assert!(xml.contains("tests=\"5\" failures=\"3\""), "{xml}");
    assert_eq!(xml.matches("<failure ").count(), 3, "{xml}");

    let o = run(&[
        "plugin",
        "test",
        wasm.to_str().expect("utf-8"),
        dir.to_str().expect("utf-8"),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let passed: Vec<bool> = doc["fixtures"]
        .as_array()
        .expect("array")
        .iter()
        .map(|x| x["passed"].as_bool().expect("bool"))
        .collect();
    assert_eq!(passed, [true, false, false, false, true]);
    assert_eq!(
        doc["fixtures"][1]["failures"]
            .as_array()
            .expect("failures")
            .len(),
        5
    );
    // The failed fixtures are the envelope's errors, each naming its file.
    assert_eq!(doc["ok"], false, "{doc}");
    assert_eq!(doc["errors"].as_array().expect("errors").len(), 3, "{doc}");
    assert!(doc["errors"][0]["file"].is_string(), "{doc}");

    // An empty directory is an error, not a pass.
    let empty = dir.join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let o = run(&[
        "plugin",
        "test",
        wasm.to_str().expect("utf-8"),
        empty.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no fixtures in "), "{}", stderr(&o));
}

/// A plugin built against another major/minor of the contract is refused with
/// the version it needs and the range this host runs, not a linker error.
#[test]
fn incompatible_contract_version_is_refused_by_name() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wit = tmp.path().join("wit");
    std::fs::create_dir(&wit).expect("mkdir");
    let text = std::fs::read_to_string(repo_root().join("wit/policy.wit")).expect("wit");
    std::fs::write(
        wit.join("policy.wit"),
        text.replace(
            "package haseed:policy@0.3.0;",
            "package haseed:policy@0.4.0;",
        ),
    )
    .expect("write");
    let wasm = tmp.path().join("future.wasm");
    componentize_py(&wit, &repo_root().join("plugins/python/weights"), &wasm);

    let o = run(&["plugin", "inspect", wasm.to_str().expect("utf-8"), "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(doc["wit_package"], "haseed:policy@0.4.0");
    assert_eq!(doc["runnable"], false);

    let site = tmp.path().join("site.toml");
    let mut text = std::fs::read_to_string(example("pi-k8s")).expect("example");
    text.push_str(&plugin_entry(&wasm, None));
    std::fs::write(&site, text).expect("write");
    let o = run(&["plan", site.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("built against haseed:policy@0.4.0, but this host offers haseed:policy@0.3.0"),
        "{err}"
    );
    assert!(
        err.contains("it runs plugins built against 0.3.0, and 0.1.0, 0.2.0 through an adapter"),
        "{err}"
    );
    assert!(err.contains("site.toml:"), "{err}");
}

/// What both `plugin new` templates do: `plugin check` on the example site
/// shows lb1's server checks getting `rise`, and the plugin's log line.
fn assert_tunes_lb1_checks(wasm: &std::path::Path, rise: u32) {
    let o = plugin_check(
        wasm,
        &example("pi-k8s"),
        &[
            "--settings",
            &format!(r#"{{"rise": {rise}}}"#),
            "--node",
            "lb1",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let want =
        format!("+    server master2 192.168.3.252:6443 check inter 1000ms rise {rise} fall 2 check-ssl verify none");
    assert!(stdout(&o).contains(&want), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("lb1: tuned 3 server checks"),
        "{}",
        stderr(&o)
    );
}

/// `haseed plugin check FILE --site SITE EXTRA...`.
fn plugin_check(
    file: &std::path::Path,
    site: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec![
        "plugin",
        "check",
        file.to_str().expect("utf-8"),
        "--site",
        site.to_str().expect("utf-8"),
    ];
    args.extend_from_slice(extra);
    run(&args)
}
