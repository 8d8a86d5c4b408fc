//! Shared helpers for the end-to-end tests: run the real `haseed` binary,
//! locate the plugins build.rs compiled from source, write scratch sites.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

/// Whether the tests run as root (CI does): network namespaces, taps, qemu.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

pub fn haseed() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_haseed"));
    // One cache for the whole test run, outside the clone, so every test does
    // not recompile the default policy.
    cmd.env("HASEED_CACHE_DIR", cache_dir());
    cmd
}

pub fn cache_dir() -> PathBuf {
    std::env::temp_dir().join("haseed-test-cache")
}

/// Runs haseed with `args` and returns the output.
pub fn run(args: &[&str]) -> Output {
    haseed().args(args).output().expect("haseed runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("builder/ has a parent")
        .to_path_buf()
}

pub fn example(name: &str) -> PathBuf {
    repo_root().join("examples").join(name).join("site.toml")
}

/// A plugin component that builder/build.rs compiled from `plugins/`.
pub fn plugin(file: &str) -> PathBuf {
    let path = Path::new(env!("HASEED_PLUGIN_DIR")).join(file);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

pub fn sha256_file(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).expect("readable")))
}

/// A `[[plugin]]` entry pinning the component at `path` by its digest;
/// `settings` is TOML inline-table text, or None for no settings.
pub fn plugin_entry(path: &Path, settings: Option<&str>) -> String {
    let mut entry = format!(
        "\n[[plugin]]\npath = \"{}\"\nsha256 = \"{}\"\n",
        path.display(),
        sha256_file(path)
    );
    if let Some(settings) = settings {
        entry.push_str(&format!("settings = {settings}\n"));
    }
    entry
}

/// The example site with `[[plugin]]` entries appended (pinned by digest).
pub fn site_with_plugins(dir: &Path, plugins: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(example("pi-k8s")).expect("example site");
    for (file, settings) in plugins {
        text.push_str(&plugin_entry(&plugin(file), Some(settings)));
    }
    let site = dir.join("site.toml");
    std::fs::write(&site, text).expect("write site");
    site
}

/// `haseed build SITE -o OUT`.
pub fn build(site: &Path, out: &Path) -> Output {
    run(&[
        "build",
        site.to_str().expect("utf-8 path"),
        "-o",
        out.to_str().expect("utf-8 path"),
    ])
}

/// Every file under `dir`, as (relative path, bytes), sorted.
pub fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).expect("readable dir") {
            let entry = entry.expect("entry");
            let path = entry.path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                let rel = path.strip_prefix(base).expect("under base");
                out.push((
                    rel.to_string_lossy().into_owned(),
                    std::fs::read(&path).expect("readable"),
                ));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Builds a Python plugin with componentize-py (installed by
/// .ci/install-deps; a missing tool fails the test with that hint).
pub fn componentize_py(wit: &Path, app_dir: &Path, out: &Path) {
    let o = Command::new("componentize-py")
        .arg("-d")
        .arg(wit)
        .args(["-w", "policy-plugin", "componentize", "-p"])
        .arg(app_dir)
        .arg("app")
        .arg("-o")
        .arg(out)
        .output()
        .expect("componentize-py is installed (.ci/install-deps: pip install componentize-py)");
    assert!(
        o.status.success(),
        "componentize-py failed:\n{}",
        stderr(&o)
    );
}

/// Compares a build's output tree (without the bundle and the marker) with
/// `tests/golden/NAME`; `UPDATE_GOLDEN=1` rewrites the golden files first.
#[allow(dead_code)] // not every test binary compares golden files
pub fn assert_golden(out: &Path, name: &str) {
    let dir = repo_root().join("tests/golden").join(name);
    let built: Vec<_> = tree(out)
        .into_iter()
        .filter(|(p, _)| !p.ends_with(".tar.gz") && !p.starts_with(".haseed"))
        .collect();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let _ = std::fs::remove_dir_all(&dir);
        for (rel, bytes) in &built {
            let path = dir.join(rel);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, bytes).expect("write golden");
        }
    }
    let expected = tree(&dir);
    let names = |v: &[(String, Vec<u8>)]| v.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&built),
        names(&expected),
        "the set of built files differs from tests/golden/{name} (UPDATE_GOLDEN=1 to accept)"
    );
    for ((rel, got), (_, want)) in built.iter().zip(&expected) {
        assert_eq!(
            String::from_utf8_lossy(got),
            String::from_utf8_lossy(want),
            "{rel} differs from tests/golden/{name} (UPDATE_GOLDEN=1 cargo test to accept after review)"
        );
    }
}

/// The example site with its key replaced by `public_key` (and its Pi
/// nodes on `platform`), written into `dir`.
pub fn site_with_key(dir: &Path, public_key: &str, platform: &str) -> PathBuf {
    let text = std::fs::read_to_string(example("pi-k8s")).expect("example site");
    let mut replaced = 0;
    let edited: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with("ssh_authorized_keys") {
                replaced += 1;
                format!("ssh_authorized_keys = [{:?}]", public_key.trim())
            } else if l.trim() == "platform = \"raspios\"" {
                format!("platform = {platform:?}")
            } else {
                l.to_string()
            }
        })
        .collect();
    assert_eq!(
        replaced, 1,
        "the example site has one ssh_authorized_keys line"
    );
    let site = dir.join("site.toml");
    std::fs::write(&site, edited.join("\n") + "\n").expect("write site");
    site
}

/// A throwaway ed25519 keypair in `dir`: (private key path, public key line).
pub fn keypair(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("id_ed25519");
    let o = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "haseed-card-test",
            "-f",
        ])
        .arg(&key)
        .output()
        .expect("ssh-keygen runs (openssh-client, .ci/install-deps)");
    assert!(o.status.success(), "ssh-keygen: {}", stderr(&o));
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("public key");
    (key, public.trim().to_string())
}
