//! `haseed plugin test PLUGIN [FIXTURES]`: a plugin's own regression tests, written as data.
//!
//! Every `*.toml` file in the fixtures directory is one fixture: a site (a path relative to the
//! fixture), the plugin's settings, and what must come out when the plugin runs last in that
//! site's chain (the chain `plugin check` runs): plan fields, rendered files, or an error.
//!
//! ```toml
//! site = "site.toml"                  # default: site.toml next to the fixture
//! settings = { rise = 5 }             # the plugin's settings (default: {})
//!
//! [[expect]]                          # a plan field: a JSON pointer into the node's plan,
//! node = "lb1"                        # as `haseed plan --json` prints it under nodes[].plan
//! plan = "/haproxy/backends/0/servers/0/check/rise"
//! equals = 5
//!
//! [[expect]]                          # a rendered file on the node (or /seed/user-data, ...)
//! node = "lb1"
//! file = "/etc/haproxy/haproxy.cfg"
//! contains = "rise 5"                 # or: equals_file = "expected/lb1-haproxy.cfg"
//!
//! [error]                             # instead of [[expect]]: the plugin must fail
//! node = "lb1"                        # optional: the node it fails on
//! contains = "is not a positive whole number"
//! ```
//!
//! Why data and not code: a fixture is what a site engineer already has (a site and a
//! setting), it runs the plugin exactly as a build runs it (sandbox, checker, renderer), and it
//! needs no toolchain for the plugin's language (kwctl's `test` RFC asks the same of policy
//! tests: kubewarden/kwctl#1386).
//!
//! Cost: the plugin is compiled (or fetched from the cache) once per run; each distinct site is
//! read and its own chain loaded once, however many fixtures share it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Deserialize;

use crate::contract::NodePlan;
use crate::inventory::Inventory;
use crate::pipeline::{self, BuildError, Chain};
use crate::policy::{Host, LoadedPlugin};
use crate::render::{NodeArtifacts, Renderer};

/// One fixture file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureFile {
    #[serde(default = "default_site")]
    site: PathBuf,
    #[serde(default)]
    settings: toml::Table,
    #[serde(default)]
    expect: Vec<Expect>,
    error: Option<ExpectError>,
}

fn default_site() -> PathBuf {
    PathBuf::from("site.toml")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    node: String,
    /// A JSON pointer into the node's plan.
    plan: Option<String>,
    /// A rendered file's path on the node.
    file: Option<String>,
    equals: Option<toml::Value>,
    contains: Option<String>,
    equals_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectError {
    node: Option<String>,
    contains: String,
}

/// The outcome of one fixture.
#[derive(Debug, serde::Serialize)]
pub struct Outcome {
    pub name: String,
    pub file: String,
    pub passed: bool,
    /// One entry per unmet expectation (with a diff where a file differs).
    pub failures: Vec<String>,
    pub duration_ms: f64,
}

/// A site read once per run, with its own chain (minus the plugin under test).
struct SiteRun {
    inv: Inventory,
    base: Chain,
    /// The scope the site grants the plugin under test if it pins it: a build of the site
    /// would hold it to that.
    pinned_scope: Option<Vec<String>>,
}

/// Runs every fixture in `dir` against `plugin`, in file-name order.
pub fn run_all(host: &Host, plugin: &LoadedPlugin, dir: &Path) -> anyhow::Result<Vec<Outcome>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading the fixtures directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort();
    // A site file in the same directory is not a fixture.
    files.retain(|p| !is_site_file(p));
    anyhow::ensure!(
        !files.is_empty(),
        "no fixtures in {}: a fixture is a .toml file with `settings` and [[expect]] or [error] \
         (see `haseed plugin test --help`)",
        dir.display()
    );
    let mut sites: HashMap<PathBuf, Result<SiteRun, String>> = HashMap::new();
    let renderer = Renderer::new();
    let mut out = Vec::with_capacity(files.len());
    for file in files {
        let started = Instant::now();
        let failures = run_one(host, plugin, &renderer, &file, &mut sites);
        out.push(Outcome {
            name: file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            file: file.display().to_string(),
            passed: failures.is_empty(),
            failures,
            duration_ms: started.elapsed().as_secs_f64() * 1e3,
        });
    }
    Ok(out)
}

/// A file with a `[site]` table is a site, not a fixture.
fn is_site_file(p: &Path) -> bool {
    std::fs::read_to_string(p)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .is_some_and(|t| t.contains_key("site") && t.get("site").is_some_and(|s| s.is_table()))
}

fn run_one(
    host: &Host,
    plugin: &LoadedPlugin,
    renderer: &Renderer,
    file: &Path,
    sites: &mut HashMap<PathBuf, Result<SiteRun, String>>,
) -> Vec<String> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return vec![format!("cannot read {}: {e}", file.display())],
    };
    let fx: FixtureFile = match toml::from_str(&text) {
        Ok(f) => f,
        Err(e) => return vec![format!("{}: {}", file.display(), e.to_string().trim_end())],
    };
    if fx.expect.is_empty() && fx.error.is_none() {
        return vec![format!(
            "{}: expects nothing: add [[expect]] entries or an [error] table",
            file.display()
        )];
    }
    let dir = file.parent().unwrap_or(Path::new("."));
    let site_path = dir.join(&fx.site);
    let key = std::fs::canonicalize(&site_path).unwrap_or(site_path.clone());
    let site = sites
        .entry(key)
        .or_insert_with(|| load_site(host, plugin, &site_path));
    let site = match site {
        Ok(s) => s,
        Err(e) => return vec![e.clone()],
    };
    let settings = match serde_json::to_string(&fx.settings) {
        Ok(s) => s,
        Err(e) => return vec![format!("settings: {e}")],
    };
    let mut chain = Chain {
        plugins: site.base.plugins.clone(),
        settings: site.base.settings.clone(),
        scopes: site.base.scopes.clone(),
    };
    chain.push(plugin.clone(), settings, site.pinned_scope.clone());
    let planned = pipeline::plan(host, &site.inv, &chain);

    let mut failures = Vec::new();
    match (planned, &fx.error) {
        (Err(e), Some(want)) => check_error(&e, want, &mut failures),
        (Err(e), None) => failures.push(format!("the plugin failed:\n{e}")),
        (Ok(_), Some(want)) => failures.push(format!(
            "expected an error containing {:?}{}, but the site planned",
            want.contains,
            want.node
                .as_ref()
                .map(|n| format!(" on node {n}"))
                .unwrap_or_default()
        )),
        (Ok((plans, _logs)), None) => {
            // Only the nodes a file expectation names are rendered, each once.
            let mut rendered: HashMap<usize, Result<NodeArtifacts, String>> = HashMap::new();
            for (i, want) in fx.expect.iter().enumerate() {
                let at = format!("expect[{i}] (node {})", want.node);
                let Some(index) = site.inv.site.nodes.iter().position(|n| n.name == want.node)
                else {
                    failures.push(format!("{at}: the site has no node {}", want.node));
                    continue;
                };
                match (&want.plan, &want.file) {
                    (Some(pointer), None) => {
                        check_plan(&plans[index], pointer, want, &at, &mut failures)
                    }
                    (None, Some(path)) => {
                        let files = rendered.entry(index).or_insert_with(|| {
                            renderer
                                .render_node_with(
                                    &site.inv.site,
                                    index as u32,
                                    &plans[index],
                                    &site.inv.node_extras[index],
                                )
                                .map_err(|e| e.to_string())
                        });
                        match files {
                            Ok(files) => check_file(files, path, want, dir, &at, &mut failures),
                            Err(e) => failures.push(format!("{at}: rendering failed: {e}")),
                        }
                    }
                    _ => failures.push(format!(
                        "{at}: give exactly one of `plan` (a JSON pointer) or `file` (a path on the node)"
                    )),
                }
            }
        }
    }
    failures
}

fn load_site(host: &Host, plugin: &LoadedPlugin, path: &Path) -> Result<SiteRun, String> {
    let inv =
        pipeline::load_inventory(path).map_err(|e| format!("site {}:\n{e}", path.display()))?;
    let full = pipeline::load_chain(host, &inv).map_err(|e| e.to_string())?;
    // The site's chain without the plugin under test (it runs last, with the fixture's settings).
    let (base, pinned_scope) = full.without(&plugin.digest);
    Ok(SiteRun {
        inv,
        base,
        pinned_scope,
    })
}

fn check_error(e: &BuildError, want: &ExpectError, failures: &mut Vec<String>) {
    let text = e.to_string();
    match e {
        BuildError::Policy { errors, .. } => {
            let hit = errors.iter().any(|err| {
                err.message.contains(&want.contains)
                    && want
                        .node
                        .as_ref()
                        .is_none_or(|n| err.node.as_ref() == Some(n))
            });
            if !hit {
                failures.push(format!(
                    "expected an error containing {:?}{}, got:\n{text}",
                    want.contains,
                    want.node
                        .as_ref()
                        .map(|n| format!(" on node {n}"))
                        .unwrap_or_default()
                ));
            }
        }
        _ if want.node.is_none() && text.contains(&want.contains) => {}
        _ => failures.push(format!(
            "expected a plugin error containing {:?}, got:\n{text}",
            want.contains
        )),
    }
}

fn check_plan(plan: &NodePlan, pointer: &str, want: &Expect, at: &str, failures: &mut Vec<String>) {
    let value = match serde_json::to_value(plan) {
        Ok(v) => v,
        Err(e) => return failures.push(format!("{at}: {e}")),
    };
    let Some(got) = value.pointer(pointer) else {
        return failures.push(format!(
            "{at}: the plan has nothing at {pointer} (JSON pointer into `haseed plan --json`'s nodes[].plan)"
        ));
    };
    if let Some(equals) = &want.equals {
        let equals = match serde_json::to_value(equals) {
            Ok(v) => v,
            Err(e) => return failures.push(format!("{at}: {e}")),
        };
        if &equals != got {
            failures.push(format!("{at}: {pointer} is {got}, expected {equals}"));
        }
    }
    if let Some(part) = &want.contains {
        let text = match got {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if !text.contains(part.as_str()) {
            failures.push(format!(
                "{at}: {pointer} ({text}) does not contain {part:?}"
            ));
        }
    }
    if want.equals.is_none() && want.contains.is_none() {
        failures.push(format!("{at}: give `equals` or `contains` for {pointer}"));
    }
}

fn check_file(
    artifacts: &NodeArtifacts,
    path: &str,
    want: &Expect,
    dir: &Path,
    at: &str,
    failures: &mut Vec<String>,
) {
    let content = match path {
        "/seed/user-data" => Some(artifacts.user_data.as_str()),
        "/seed/meta-data" => Some(artifacts.meta_data.as_str()),
        "/seed/network-config" => Some(artifacts.network_config.as_str()),
        _ => artifacts
            .files
            .iter()
            .find(|f| f.path == path)
            .map(|f| f.content.as_str()),
    };
    let Some(content) = content else {
        return failures.push(format!("{at}: the node has no file {path}"));
    };
    if let Some(part) = &want.contains {
        if !content.contains(part.as_str()) {
            failures.push(format!("{at}: {path} does not contain {part:?}"));
        }
    }
    if let Some(expected_file) = &want.equals_file {
        let expected_path = dir.join(expected_file);
        match std::fs::read_to_string(&expected_path) {
            Ok(expected) if expected == content => {}
            Ok(expected) => failures.push(format!(
                "{at}: {path} differs from {}:\n{}",
                expected_path.display(),
                similar::TextDiff::from_lines(expected.as_str(), content)
                    .unified_diff()
                    .header(&expected_path.display().to_string(), path)
            )),
            Err(e) => failures.push(format!(
                "{at}: cannot read {}: {e}",
                expected_path.display()
            )),
        }
    }
    if want.equals.is_some() {
        failures.push(format!(
            "{at}: `equals` is for plan fields; for a file give `contains` or `equals_file`"
        ));
    }
    if want.contains.is_none() && want.equals_file.is_none() {
        failures.push(format!("{at}: give `contains` or `equals_file` for {path}"));
    }
}

/// The outcomes as JUnit XML (one testsuite, one testcase per fixture), as CI systems read it.
pub fn junit(plugin: &str, outcomes: &[Outcome], total: Duration) -> String {
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuite name=\"{}\" tests=\"{}\" failures=\"{failed}\" errors=\"0\" time=\"{:.3}\">",
        xml(plugin),
        outcomes.len(),
        total.as_secs_f64()
    );
    for o in outcomes {
        let _ = write!(
            x,
            "  <testcase classname=\"{}\" name=\"{}\" file=\"{}\" time=\"{:.3}\"",
            xml(plugin),
            xml(&o.name),
            xml(&o.file),
            o.duration_ms / 1e3
        );
        if o.passed {
            x.push_str("/>\n");
        } else {
            let first = o
                .failures
                .first()
                .map(|f| f.lines().next().unwrap_or(""))
                .unwrap_or("");
            let _ = writeln!(
                x,
                ">\n    <failure message=\"{}\">{}</failure>\n  </testcase>",
                xml(first),
                xml(&o.failures.join("\n"))
            );
        }
    }
    x.push_str("</testsuite>\n");
    x
}

/// Escapes text for an XML attribute or element; drops characters XML 1.0 cannot carry.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junit_escapes_and_counts() {
        let outcomes = vec![
            Outcome {
                name: "ok".into(),
                file: "f/ok.toml".into(),
                passed: true,
                failures: vec![],
                duration_ms: 1.0,
            },
            Outcome {
                name: "bad<&>".into(),
                file: "f/bad.toml".into(),
                passed: false,
                failures: vec!["x is \"1\"\u{1}, expected 2\nmore".into()],
                duration_ms: 2.0,
            },
        ];
        let x = junit("p.wasm", &outcomes, Duration::from_millis(3));
        assert!(x.contains("tests=\"2\" failures=\"1\""), "{x}");
        assert!(x.contains("name=\"bad&lt;&amp;&gt;\""), "{x}");
        assert!(
            x.contains("message=\"x is &quot;1&quot;, expected 2\""),
            "{x}"
        );
        assert!(!x.contains('\u{1}'), "{x}");
        assert!(
            x.contains(
                "<testcase classname=\"p.wasm\" name=\"ok\" file=\"f/ok.toml\" time=\"0.001\"/>"
            ),
            "{x}"
        );
    }
}
