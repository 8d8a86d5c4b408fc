//! The broken-inventory corpus (`tests/broken_inventories/*.toml`): every rule of the inventory
//! reader and resolver violated at least once, syntax errors, wrong types, deep nesting. Each
//! file says what `haseed plan` must report in header lines
//!
//! ```text
//! # expect: LINE:COL message fragment     (an error at that place saying that)
//! # expect: - message fragment            (an error about the whole file)
//! ```
//!
//! and this test checks exit status 1, no panic, and that stderr has a
//! `FILE:LINE:COL: error: ...fragment...` line for each expectation. A few inputs too big to
//! commit (a 9 MiB file, 20,000 nodes, 256 VIPs, 60 errors) are generated here.

mod common;

use std::path::{Path, PathBuf};

use common::*;

struct Expect {
    /// None: an error about the whole file.
    at: Option<(usize, usize)>,
    says: String,
}

fn expectations(path: &Path, text: &str) -> Vec<Expect> {
    let mut out = Vec::new();
    for line in text.lines().take_while(|l| l.starts_with('#')) {
        let Some(rest) = line.strip_prefix("# expect: ") else {
            continue;
        };
        let (at, says) = rest
            .split_once(' ')
            .unwrap_or_else(|| panic!("{}: bad expect line {line:?}", path.display()));
        let at = (at != "-").then(|| {
            let (l, c) = at.split_once(':').expect("LINE:COL");
            (
                l.parse().expect("line number"),
                c.parse().expect("column number"),
            )
        });
        out.push(Expect {
            at,
            says: says.to_string(),
        });
    }
    assert!(!out.is_empty(), "{}: no `# expect:` line", path.display());
    out
}

/// Runs `haseed plan` on `path` and checks every expectation.
fn check(path: &Path, expects: &[Expect]) -> Result<(), String> {
    let o = run(&["plan", path.to_str().expect("utf-8 path")]);
    let err = stderr(&o);
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    if o.status.code() != Some(1) || err.contains("panicked") {
        return Err(format!(
            "{name}: exit status {:?} (want 1; a panic exits 101):\n{err}",
            o.status.code()
        ));
    }
    if !o.stdout.is_empty() {
        return Err(format!("{name}: printed a plan:\n{}", stdout(&o)));
    }
    // The site file is refused at its own line, before any plugin runs: an error that blames a
    // plugin (e.g. the default policy's plan failing the checker) points at the wrong file.
    if err
        .lines()
        .any(|l| l.contains("error: plugin ") && l.contains(": node "))
    {
        return Err(format!(
            "{name}: blamed a plugin instead of the site file:\n{err}"
        ));
    }
    for e in expects {
        let head = match e.at {
            Some((l, c)) => format!("{name}:{l}:{c}: error: "),
            None => format!("{name}: error: "),
        };
        let found = err
            .lines()
            .any(|l| l.contains(&head) && l.contains(&e.says));
        if !found {
            return Err(format!(
                "{name}: no line with {head:?} saying {:?}:\n{err}",
                e.says
            ));
        }
    }
    Ok(())
}

fn corpus() -> Vec<PathBuf> {
    let dir = repo_root().join("tests/broken_inventories");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/broken_inventories")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_broken_inventory_gets_its_message_at_its_place() {
    let files = corpus();
    assert!(files.len() >= 90, "only {} files", files.len());
    let failures: Vec<String> = files
        .iter()
        .filter_map(|p| {
            let text = std::fs::read_to_string(p).expect("read");
            check(p, &expectations(p, &text)).err()
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} broken inventories:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}

/// The corpus's first site, cut before its `[[vip]]`: a network `lan` (10.0.0.0/24), nodes
/// lb1, lb2, m1.
fn base() -> String {
    let text =
        std::fs::read_to_string(repo_root().join("tests/broken_inventories/unknown-key.toml"))
            .expect("read");
    let body: String = text
        .lines()
        .skip_while(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    body[..body.find("[[vip]]").expect("a [[vip]]")].to_string()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

#[test]
fn generated_broken_inventories() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut failures = Vec::new();

    // Over the size limit: refused before parsing, as a whole-file error.
    let mut huge = base();
    while huge.len() <= 9 << 20 {
        huge.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    let p = write(tmp.path(), "huge.toml", &huge);
    failures.extend(
        check(
            &p,
            &[Expect {
                at: None,
                says: "too large".into(),
            }],
        )
        .err(),
    );

    // 20,000 nodes (under the limit) with one bad address in the very last one.
    let mut big = base()
        .replace("10.0.0.0/24", "10.0.0.0/16")
        .replace("gateway = \"10.0.0.1\"", "gateway = \"10.0.255.254\"");
    for i in 0..20_000u32 {
        let addr = if i == 19_999 {
            "10.0.300.1".to_string()
        } else {
            format!("10.0.{}.{}", 100 + i / 250, 1 + i % 250)
        };
        big.push_str(&format!(
            "\n[[node]]\nname = \"w{i}\"\nroles = [\"worker\"]\naddress = \"{addr}\"\n"
        ));
    }
    let line = big.lines().count();
    let p = write(tmp.path(), "big.toml", &big);
    failures.extend(
        check(
            &p,
            &[Expect {
                at: Some((line, 11)),
                says: "not an IP address".into(),
            }],
        )
        .err(),
    );

    // 256 VIPs in one network: more virtual routers than VRRP has ids.
    let mut vips = base().replace("10.0.0.0/24", "10.0.0.0/16");
    for i in 0..256u32 {
        vips.push_str(&format!(
            "\n[[vip]]\nname = \"v{i}\"\naddress = \"10.0.1.{}\"\nnetwork = \"lan\"\n",
            i % 256
        ));
    }
    let p = write(tmp.path(), "vips.toml", &vips);
    let o = run(&["plan", p.to_str().unwrap()]);
    let err = stderr(&o);
    if o.status.code() != Some(1) || !err.contains("more than 255 VIPs") {
        failures.push(format!("vips.toml: {:?}\n{err}", o.status.code()));
    }

    // 60 bad addresses: the first 50 are shown in order, then one line for the rest.
    let mut many = base();
    for i in 0..60u32 {
        many.push_str(&format!(
            "\n[[node]]\nname = \"x{i}\"\nroles = [\"worker\"]\naddress = \"bad{i}\"\n"
        ));
    }
    let first_bad = many[..many.find("\"bad0\"").unwrap()].lines().count();
    let p = write(tmp.path(), "many.toml", &many);
    failures.extend(
        check(
            &p,
            &[
                Expect {
                    at: Some((first_bad, 11)),
                    says: "bad0".into(),
                },
                Expect {
                    at: None,
                    says: "10 more errors not shown".into(),
                },
            ],
        )
        .err(),
    );

    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
