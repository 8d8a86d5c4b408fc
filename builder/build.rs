//! Builds the policy plugins from source, so the default policy embedded in
//! `haseed` and the plugins the tests load never come from a committed binary
//! (the way wasmtime's test-programs build their guests).
//!
//! Two layouts:
//! - a development checkout (`../plugins` and `../wit` beside `builder/`): the
//!   whole plugins workspace, since the tests load every plugin;
//! - a packaged crate (`cargo package`, `cargo install` from a `.crate`): only the
//!   default policy, from the copy the crate carries in `assets/`. In the
//!   checkout those are symlinks into `plugins/`, `wit/`, `images/` and
//!   `examples/`, which `cargo package` stores as files. The guest's manifest and
//!   its workspace travel as `manifest.toml` and `workspace.toml`: cargo leaves
//!   any directory holding a `Cargo.toml` out of a package (a nested package), so
//!   this script puts them back under their own names in `OUT_DIR`.
//!
//! The plugins get their own target directory: a nested cargo sharing our build
//! directory would wait forever on our own lock.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets it"));
    let checkout = manifest_dir
        .parent()
        .filter(|root| root.join("plugins/Cargo.toml").is_file() && root.join("wit").is_dir());
    let (plugins, target_dir, packages): (PathBuf, PathBuf, &[&str]) = match checkout {
        Some(root) => {
            for watched in ["plugins", "wit"] {
                rerun_if_changed_tree(&root.join(watched));
            }
            let target_dir = env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("target"))
                .join("wasm-plugins");
            (root.join("plugins"), target_dir, &["--workspace"])
        }
        None => {
            let assets = manifest_dir.join("assets");
            rerun_if_changed_tree(&assets);
            let plugins = packaged_guest(&assets, &out_dir.join("guest-src"));
            (
                plugins,
                out_dir.join("guest-target"),
                &["--package", "default-policy"],
            )
        }
    };
    git_commit(checkout);
    println!("cargo:rerun-if-env-changed=HASEED_PLUGINS_PROFILE");
    println!("cargo:rerun-if-env-changed=HASEED_PLUGINS_TOOLCHAIN");

    guest_build(&plugins, &target_dir, packages);
    // The example plugins again, built against each earlier contract as it shipped: the tests
    // check that the host runs them through its adapters to the same result. Only the tests
    // load them, so a release build (`cargo install`, the .deb, `cargo run --release`) skips
    // these two guest builds unless HASEED_TEST_PLUGINS is set (`cargo test --release`).
    let for_tests = env::var("PROFILE").as_deref() == Ok("debug")
        || env::var_os("HASEED_TEST_PLUGINS").is_some();
    println!("cargo:rerun-if-env-changed=HASEED_TEST_PLUGINS");
    if checkout.is_some() {
        let examples = [
            "prefer-lb1",
            "nodeport",
            "galera-single-writer",
            "drop-tracking",
        ];
        for (feature, dir, env) in [
            ("contract-0-1", "wasm-plugins-0.1", "HASEED_PLUGIN_DIR_0_1"),
            ("contract-0-2", "wasm-plugins-0.2", "HASEED_PLUGIN_DIR_0_2"),
        ] {
            let old = target_dir.with_file_name(dir);
            let mut args = Vec::new();
            for p in examples {
                args.extend(["--package", p]);
            }
            let features = examples.map(|p| format!("{p}/{feature}")).join(",");
            args.extend(["--features", features.as_str()]);
            if for_tests {
                guest_build(&plugins, &old, &args);
            }
            println!(
                "cargo:rustc-env={env}={}",
                old.join("wasm32-wasip2").join("release").display()
            );
        }
    }

    let out = target_dir.join("wasm32-wasip2").join("release");
    let default_policy = out.join("default_policy.wasm");
    assert!(
        default_policy.exists(),
        "{} was not produced",
        default_policy.display()
    );
    println!(
        "cargo:rustc-env=HASEED_DEFAULT_POLICY_WASM={}",
        default_policy.display()
    );
    println!("cargo:rustc-env=HASEED_PLUGIN_DIR={}", out.display());
}

/// `cargo build --release --target wasm32-wasip2 ARGS` in the plugins workspace `plugins`.
fn guest_build(plugins: &Path, target_dir: &Path, args: &[&str]) {
    // HASEED_PLUGINS_TOOLCHAIN (e.g. "stable") builds the guests with another rustup toolchain
    // than ours: the fuzz targets (fuzz/) build with nightly, which may lack wasm32-wasip2.
    let toolchain = env::var("HASEED_PLUGINS_TOOLCHAIN").ok();
    let cargo = match &toolchain {
        Some(_) => "cargo".into(),
        None => env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
    };
    let mut cmd = Command::new(cargo);
    if let Some(t) = &toolchain {
        cmd.env("RUSTUP_TOOLCHAIN", t)
            .env_remove("RUSTC")
            .env_remove("RUSTDOC");
    }
    cmd.current_dir(plugins)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .args(args)
        .arg("--target-dir")
        .arg(target_dir);
    // What our own build was told must not leak into the guest build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_MAKEFLAGS",
    ] {
        cmd.env_remove(var);
    }
    for (key, _) in env::vars() {
        if key.starts_with("CARGO_PROFILE_") || key.starts_with("CARGO_CFG_") {
            cmd.env_remove(key);
        }
    }
    let status = cmd.status().unwrap_or_else(|e| {
        panic!("could not run cargo to build the policy plugins: {e}");
    });
    if !status.success() {
        panic!(
            "building the policy plugins failed (cd plugins && cargo build --release --target wasm32-wasip2). \
             Is the target installed? rustup target add wasm32-wasip2"
        );
    }
}

/// `HASEED_BUILD` for `haseed --version`: `commit C`, the commit a release build was made from
/// (`-dirty` when the tree had changes), `unknown` outside a git checkout (a packaged crate:
/// its directory may sit inside another repository, whose commit is not its own).
/// Development builds say so instead: a value that changed with every commit would recompile
/// the whole crate after each one.
fn git_commit(checkout: Option<&Path>) {
    let release = env::var("PROFILE").as_deref() == Ok("release");
    let Some(root) = checkout else {
        let build = if release {
            "commit unknown"
        } else {
            "development build"
        };
        println!("cargo:rustc-env=HASEED_BUILD={build}");
        return;
    };
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let commit = if !release {
        "development build".to_string()
    } else {
        // Rebuild when HEAD moves (a new commit, another branch).
        for path in ["HEAD", "index"] {
            if let Some(p) = git(&["rev-parse", "--git-path", path]) {
                println!("cargo:rerun-if-changed={}", root.join(p).display());
            }
        }
        if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
            if let Some(p) = git(&["rev-parse", "--git-path", &r]) {
                println!("cargo:rerun-if-changed={}", root.join(p).display());
            }
        }
        match git(&["rev-parse", "--short=12", "HEAD"]) {
            Some(c) => {
                let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                    .is_some_and(|s| !s.is_empty());
                if dirty {
                    format!("{c}-dirty")
                } else {
                    c
                }
            }
            None => "unknown".to_string(),
        }
    };
    let build = if release {
        format!("commit {commit}")
    } else {
        commit
    };
    println!("cargo:rustc-env=HASEED_BUILD={build}");
}

/// The default policy's workspace rebuilt from the packaged `assets/` under `dir`:
/// `plugins/Cargo.toml` (the plugins' workspace with the default policy its only
/// member: its dependency versions and release profile kept), `plugins/Cargo.lock`,
/// `plugins/default-policy/{Cargo.toml,src}` and `wit/` (the guest's bindings read
/// `../../wit`). Returns the workspace directory.
fn packaged_guest(assets: &Path, dir: &Path) -> PathBuf {
    let policy = assets.join("default-policy");
    let read =
        |p: &Path| fs::read_to_string(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
    if dir.exists() {
        fs::remove_dir_all(dir).expect("clearing the packaged guest's old copy");
    }
    let plugins = dir.join("plugins");
    copy_tree(&assets.join("wit"), &dir.join("wit"));
    copy_tree(&policy.join("src"), &plugins.join("default-policy/src"));
    let mut workspace: toml_edit::DocumentMut = read(&policy.join("workspace.toml"))
        .parse()
        .expect("assets/default-policy/workspace.toml is the plugins' Cargo.toml");
    let mut members = toml_edit::Array::new();
    members.push("default-policy");
    workspace["workspace"]["members"] = toml_edit::value(members);
    let write = |p: PathBuf, text: &str| {
        fs::write(&p, text).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()))
    };
    write(plugins.join("Cargo.toml"), &workspace.to_string());
    write(
        plugins.join("Cargo.lock"),
        &read(&policy.join("workspace.lock")),
    );
    write(
        plugins.join("default-policy/Cargo.toml"),
        &read(&policy.join("manifest.toml")),
    );
    plugins
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|e| panic!("creating {}: {e}", to.display()));
    let entries = fs::read_dir(from).unwrap_or_else(|e| panic!("reading {}: {e}", from.display()));
    for entry in entries {
        let entry = entry.expect("a directory entry");
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            copy_tree(&src, &dst);
        } else {
            fs::copy(&src, &dst)
                .unwrap_or_else(|e| panic!("copying {} to {}: {e}", src.display(), dst.display()));
        }
    }
}

fn rerun_if_changed_tree(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    println!("cargo:rerun-if-changed={}", dir.display());
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name == "__pycache__" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            rerun_if_changed_tree(&path);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}
