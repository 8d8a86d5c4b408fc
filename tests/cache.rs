//! The compile cache and the bounds on compiling and reading plugins, through
//! the real `haseed` binary (its compiler child is that same binary).
//!
//! Runs as root (CI does): the directory swaps need another user's files.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use haseed::policy::cache::entry_tag;
use haseed::policy::{CompileLimits, Compiler, Host, Limits};
use sha2::{Digest, Sha256};

/// `haseed --cache-dir DIR ARGS...`
fn run_cached(dir: &Path, args: &[&str]) -> Output {
    haseed()
        .arg("--cache-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("haseed runs")
}

/// `plugin inspect FILE --json` with the cache in `dir`: the plugin's own name.
fn inspected_name(dir: &Path, file: &Path) -> (String, Output) {
    let o = run_cached(
        dir,
        &["plugin", "inspect", file.to_str().expect("utf-8"), "--json"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    (doc["info"]["name"].as_str().expect("name").to_string(), o)
}

/// The cache entry of the component at `file` (named after its sha256).
fn entry_of(dir: &Path, file: &Path) -> PathBuf {
    let digest = sha256_file(file);
    std::fs::read_dir(dir)
        .expect("cache dir")
        .map(|e| e.expect("entry").path())
        .find(|p| {
            let name = p.file_name().expect("name").to_string_lossy();
            name.starts_with(&digest) && name.ends_with(".cwasm")
        })
        .unwrap_or_else(|| panic!("no cache entry for {}", file.display()))
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("cache dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

const HEADER: usize = 8 + 32;

/// Whether `entry` carries a valid tag for component `digest` under the
/// cache's key (what an attacker without the key cannot produce).
fn authentic(dir: &Path, entry: &Path, digest: &str) -> bool {
    let key = std::fs::read(dir.join("key")).expect("key");
    let bytes = std::fs::read(entry).expect("entry");
    let name = entry
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let engine = name
        .strip_prefix(&format!("{digest}-"))
        .and_then(|n| n.strip_suffix(".cwasm"))
        .expect("entry name");
    bytes.len() > HEADER && bytes[8..HEADER] == entry_tag(&key, digest, engine, &bytes[HEADER..])
}

#[test]
fn a_forged_entry_is_recompiled_not_run() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("cache");
    let a = plugin("prefer_lb1.wasm");
    let b = plugin("nodeport.wasm");
    assert_eq!(inspected_name(&dir, &a).0, "prefer-lb1");
    assert_eq!(inspected_name(&dir, &b).0, "nodeport");
    let (entry_a, entry_b) = (entry_of(&dir, &a), entry_of(&dir, &b));
    let digest_a = sha256_file(&a);
    assert!(authentic(&dir, &entry_a, &digest_a));
    let native_b = std::fs::read(&entry_b).expect("entry b")[HEADER..].to_vec();

    // The attack of the review: B's native code under A's name, its seal
    // recomputed by someone who can write the cache but not read the key
    // (a plain sha256, and an HMAC under a guessed key).
    let plain_seal = Sha256::digest(&native_b).to_vec();
    let engine_key = {
        let name = entry_a
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        name[65..name.len() - ".cwasm".len()].to_string()
    };
    let guessed_key = entry_tag(&[0u8; 32], &digest_a, &engine_key, &native_b).to_vec();
    // And a genuine entry (B's, valid under the key) passed off as A's.
    let genuine_b = std::fs::read(&entry_b).expect("entry b");
    let forgeries = [
        [b"haseedC2".as_slice(), &plain_seal, &native_b].concat(),
        [b"haseedC2".as_slice(), &guessed_key, &native_b].concat(),
        genuine_b,
    ];
    for (i, forged) in forgeries.iter().enumerate() {
        std::fs::write(&entry_a, forged).expect("forge");
        let (name, _) = inspected_name(&dir, &a);
        assert_eq!(name, "prefer-lb1", "forgery {i}: B's code ran as A");
        // The forgery was replaced by this host's own compilation of A.
        let now = std::fs::read(&entry_a).expect("entry a");
        assert_ne!(&now, forged, "forgery {i} left in place");
        assert!(authentic(&dir, &entry_a, &digest_a), "forgery {i}");
    }

    // The build path (not only inspect) refuses it too.
    std::fs::write(&entry_a, &forgeries[0]).expect("forge");
    let site = site_with_plugins(tmp.path(), &[("prefer_lb1.wasm", "{}")]);
    let o = run_cached(&dir, &["plan", site.to_str().expect("utf-8"), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(authentic(&dir, &entry_a, &digest_a));
    // A cache hit is really used: the entry is not rewritten by the next run.
    let before = std::fs::metadata(&entry_a)
        .expect("entry")
        .modified()
        .expect("mtime");
    std::thread::sleep(Duration::from_millis(20));
    inspected_name(&dir, &a);
    let after = std::fs::metadata(&entry_a)
        .expect("entry")
        .modified()
        .expect("mtime");
    assert_eq!(before, after, "a valid entry was recompiled");
}

/// Runs `plugin inspect` with the cache in `dir` and asserts the cache was
/// refused with a warning containing `why` (on stderr; with --json in the envelope's
/// warnings instead), and nothing was written there.
fn assert_cache_refused(dir: &Path, look_in: &Path, why: &str) {
    let before = entries(look_in);
    let file = plugin("prefer_lb1.wasm");
    let o = run_cached(dir, &["plugin", "inspect", file.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(
        err.matches("warning: not using the compile cache").count(),
        1,
        "{err}"
    );
    assert!(err.contains(why), "{err}");
    assert_eq!(entries(look_in), before, "the refused cache was written");

    let (name, o) = inspected_name(dir, &file);
    assert_eq!(name, "prefer-lb1");
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let warnings: Vec<&str> = doc["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .map(|w| w["message"].as_str().expect("message"))
        .collect();
    assert_eq!(warnings.len(), 1, "{doc}");
    assert!(
        warnings[0].starts_with("not using the compile cache") && warnings[0].contains(why),
        "{doc}"
    );
    assert!(!stderr(&o).contains("warning:"), "{}", stderr(&o));
    assert_eq!(entries(look_in), before, "the refused cache was written");
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), None).expect("chown (the test runs as root)");
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn a_cache_dir_owned_by_another_user_is_refused() {
    assert!(is_root(), "this test needs root (chown to another user)");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("cache");
    std::fs::create_dir(&dir).expect("mkdir");
    chmod(&dir, 0o700);
    chown(&dir, 65534);
    assert_cache_refused(&dir, &dir, "belongs to uid 65534");
}

#[test]
fn a_cache_dir_that_is_a_symlink_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let real = tmp.path().join("real");
    std::fs::create_dir(&real).expect("mkdir");
    chmod(&real, 0o700);
    let link = tmp.path().join("cache");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    assert_cache_refused(&link, &real, "is a symlink");
    // A symlink higher up is refused the same way.
    assert_cache_refused(&link.join("sub"), &real, "is a symlink");
}

#[test]
fn an_ancestor_others_can_write_is_refused_unless_sticky() {
    assert!(
        is_root(),
        "this test needs root (an ancestor owned by another user)"
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let open = tmp.path().join("open");
    let dir = open.join("cache");
    std::fs::create_dir_all(&dir).expect("mkdir");
    chmod(&dir, 0o700);
    chmod(&open, 0o777);
    assert_cache_refused(&dir, &dir, "writable by others without the sticky bit");
    // Sticky (like /tmp): others cannot rename our directory; accepted.
    chmod(&open, 0o1777);
    let (_, o) = inspected_name(&dir, &plugin("prefer_lb1.wasm"));
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    entry_of(&dir, &plugin("prefer_lb1.wasm"));
    // An ancestor owned by another user (who could swap it): refused.
    chmod(&open, 0o755);
    chown(&open, 65534);
    assert_cache_refused(&dir, &dir, "belongs to uid 65534");
}

// ---- bounded compilation ----

fn leb(mut n: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn section(id: u8, body: &[u8], out: &mut Vec<u8>) {
    out.push(id);
    leb(body.len() as u64, out);
    out.extend_from_slice(body);
}

/// A component holding one core module with one function `() -> ()` whose
/// locals and body are given.
fn component_with_function(locals: u64, body: &[u8]) -> Vec<u8> {
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    section(1, &[1, 0x60, 0, 0], &mut module);
    section(3, &[1, 0], &mut module);
    let mut func = Vec::new();
    leb(1, &mut func);
    leb(locals, &mut func);
    func.push(0x7e); // i64
    func.extend_from_slice(body);
    func.push(0x0b);
    let mut code = vec![1];
    leb(func.len() as u64, &mut code);
    code.extend_from_slice(&func);
    section(10, &code, &mut module);
    let mut component = b"\0asm\x0d\0\x01\0".to_vec();
    section(1, &module, &mut component);
    component
}

/// Small on disk, enormous to compile: `loops` nested loops around a body
/// that updates each of `locals` locals, so every loop header carries every
/// local as a block parameter (loops x locals values for the register
/// allocator).
fn pathological_component(locals: u64, loops: u64) -> Vec<u8> {
    let mut body = Vec::new();
    for _ in 0..loops {
        body.extend_from_slice(&[0x03, 0x40]); // loop
    }
    for i in 0..locals {
        body.push(0x20); // local.get i
        leb(i, &mut body);
        body.extend_from_slice(&[0x42, 0x01, 0x7c]); // i64.const 1; i64.add
        body.push(0x21); // local.set i
        leb(i, &mut body);
    }
    for _ in 0..loops {
        // local.get 0; i64.eqz; br_if 0 (a back edge); end
        body.extend_from_slice(&[0x20, 0x00, 0x50, 0x0d, 0x00, 0x0b]);
    }
    component_with_function(locals, &body)
}

/// A host whose compiler is the real `haseed` binary (as the CLI's is)
/// under `limits`, with its cache in `dir`.
fn host_compiling_in(dir: &Path, limits: CompileLimits) -> Host {
    Host::new(Some(dir.to_path_buf()), Limits::default())
        .expect("host")
        .with_compiler(Compiler::Child {
            exe: PathBuf::from(env!("CARGO_BIN_EXE_haseed")),
            limits,
        })
}

/// Compiling `pathological_component(4000, 80)` (36 KB) takes about 370 MB
/// and 28 s of CPU (measured); the limits below stop it early.
fn refused_by(limits: CompileLimits) -> (String, Duration, Vec<String>) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("cache");
    let bytes = pathological_component(4000, 80);
    assert!(bytes.len() < 40_000, "{} bytes", bytes.len());
    let host = host_compiling_in(&dir, limits);
    assert_eq!(host.cache_warning(), None);
    let started = Instant::now();
    let err = host
        .inspect("bomb.wasm", &bytes)
        .expect_err("the pathological component was compiled");
    (format!("{err:#}"), started.elapsed(), entries(&dir))
}

#[test]
fn a_component_needing_too_much_memory_to_compile_is_refused_and_leaves_no_entry() {
    let (err, took, left) = refused_by(CompileLimits {
        memory_bytes: 128 << 20,
        timeout: Duration::from_secs(60),
        cpu_secs: 60,
    });
    assert!(
        err.contains("plugin bomb.wasm: compiling it needed more than 128 MiB of memory"),
        "{err}"
    );
    assert!(err.contains("nothing was cached"), "{err}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert_eq!(left, ["key"], "a refused component left files");
}

#[test]
fn a_component_taking_too_long_to_compile_is_stopped_and_leaves_no_entry() {
    let (err, took, left) = refused_by(CompileLimits {
        memory_bytes: 2 << 30,
        timeout: Duration::from_secs(2),
        cpu_secs: 60,
    });
    assert!(
        err.contains("compiling it took longer than 2 s (the compile time limit)"),
        "{err}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(left, ["key"], "a refused component left files");
}

#[test]
fn a_component_burning_cpu_is_stopped_by_the_cpu_limit() {
    let (err, _, left) = refused_by(CompileLimits {
        memory_bytes: 2 << 30,
        timeout: Duration::from_secs(60),
        cpu_secs: 1,
    });
    assert!(
        err.contains("used more than 1 s of CPU (the compile time limit)"),
        "{err}"
    );
    assert_eq!(left, ["key"]);
}

#[test]
fn the_default_limits_compile_a_real_plugin_through_the_child() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("cache");
    let host = host_compiling_in(&dir, CompileLimits::default());
    let bytes = std::fs::read(plugin("prefer_lb1.wasm")).expect("plugin");
    let report = host.inspect("prefer_lb1.wasm", &bytes).expect("inspect");
    assert!(report.runnable, "{:?}", report.reason);
    assert_eq!(report.info.expect("info").name, "prefer-lb1");
    entry_of(&dir, &plugin("prefer_lb1.wasm"));
}

#[test]
fn an_invalid_component_is_refused_with_wasmtimes_reason() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("cache");
    let file = tmp.path().join("bad.wasm");
    // local.get of a local that does not exist.
    std::fs::write(&file, component_with_function(1, &[0x20, 0x05, 0x1a])).expect("write");
    let o = run_cached(&dir, &["plugin", "inspect", file.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("cannot compile the component"), "{err}");
    assert!(err.contains("local"), "{err}");
    assert_eq!(entries(&dir), ["key"]);
}

// ---- plugin files ----

#[test]
fn plugin_files_over_the_cap_are_refused_before_they_are_read() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // A 2 GiB sparse file: the pin check would read it all; the cap refuses it at once.
    let big = tmp.path().join("big.wasm");
    let f = std::fs::File::create(&big).expect("create");
    f.set_len(2 << 30).expect("sparse");
    let mut text = std::fs::read_to_string(example("pi-k8s")).expect("example");
    text.push_str(&format!(
        "\n[[plugin]]\npath = \"{}\"\nsha256 = \"{}\"\n",
        big.display(),
        "0".repeat(64)
    ));
    let site = tmp.path().join("site.toml");
    std::fs::write(&site, text).expect("write");
    let started = Instant::now();
    let o = run(&["plan", site.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("2147483648 bytes; at most 64 MiB"), "{err}");
    assert!(err.contains("site.toml:"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));

    let o = run(&["plugin", "inspect", big.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("at most 64 MiB"), "{}", stderr(&o));
}

#[test]
fn fifos_and_devices_are_refused_without_blocking() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fifo = tmp.path().join("plugin.wasm");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(status.success());
    for (path, what) in [
        (fifo.as_path(), "a FIFO"),
        (Path::new("/dev/zero"), "a device"),
    ] {
        let mut text = std::fs::read_to_string(example("pi-k8s")).expect("example");
        text.push_str(&format!(
            "\n[[plugin]]\npath = \"{}\"\nsha256 = \"{}\"\n",
            path.display(),
            "0".repeat(64)
        ));
        let site = tmp.path().join("site.toml");
        std::fs::write(&site, text).expect("write");
        let started = Instant::now();
        let o = run(&["plan", site.to_str().expect("utf-8")]);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains(what), "{}", stderr(&o));
        assert!(started.elapsed() < Duration::from_secs(10));
        let o = run(&["plugin", "inspect", path.to_str().expect("utf-8")]);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains(what), "{}", stderr(&o));
    }
}
