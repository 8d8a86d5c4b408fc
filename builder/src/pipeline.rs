//! The whole flow in memory: inventory -> policy chain -> checked plans ->
//! rendered artifacts. Touches no output file: the CLI decides where the
//! result goes (stdout, a build directory, a validator run).

use std::fmt;
use std::path::PathBuf;

use crate::contract::NodePlan;
use crate::diag::Diagnostics;
use crate::inventory::{self, Inventory};
use crate::policy::{read_pinned, ChainLink, Host, LoadOnce, LoadedPlugin, PluginLog, PolicyError};
use crate::render::{NodeArtifacts, Renderer};

/// Everything that can stop a build, each carrying what the user needs to
/// find the cause.
#[derive(Debug)]
pub enum BuildError {
    /// The site file is wrong: every problem with file, line and column.
    Inventory(Diagnostics),
    /// A plugin could not be loaded (missing, tampered, not a component); `at` is its
    /// `[[plugin]]` entry, when it has one.
    Plugin {
        at: Option<Location>,
        message: String,
    },
    /// The chain failed: one entry per plugin/node failure.
    Policy {
        errors: Vec<PolicyError>,
        /// What the plugins printed before the failure.
        logs: Vec<PluginLog>,
        /// Where each failure points (the failing node's definition, the refused setting),
        /// when known.
        locations: Vec<Option<Location>>,
    },
    /// A renderer failed (a bug: the checker should have caught it).
    Render { node: String, message: String },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Inventory(d) => write!(f, "{d}"),
            BuildError::Plugin {
                at: Some(at),
                message,
            } => write!(f, "error: {at}: {message}"),
            BuildError::Plugin { at: None, message } => write!(f, "error: {message}"),
            BuildError::Policy {
                errors,
                logs,
                locations,
            } => {
                for log in logs {
                    writeln!(f, "[{}] {}", log.plugin, log.line)?;
                }
                for (i, (error, at)) in errors.iter().zip(locations).enumerate() {
                    if i > 0 {
                        writeln!(f)?;
                    }
                    match at {
                        Some(at) => write!(f, "{at}: error: {error}")?,
                        None => write!(f, "error: {error}")?,
                    }
                }
                write!(f, "\nnothing was written")
            }
            BuildError::Render { node, message } => {
                write!(f, "error: node {node}: rendering failed: {message}")
            }
        }
    }
}

impl std::error::Error for BuildError {}

/// The plugins of one build, loaded and in chain order (default policy first).
pub struct Chain {
    pub plugins: Vec<LoadedPlugin>,
    pub settings: Vec<String>,
    /// The change scope the site grants each (`scope` in its `[[plugin]]` entry), if it says.
    pub scopes: Vec<Option<Vec<String>>>,
}

impl Chain {
    /// This chain without the component `digest` (the default policy, link 0, always stays):
    /// the site's chain a candidate plugin is then appended to, and the scope the site grants
    /// the dropped link (its `[[plugin]] scope`), which the candidate is then held to.
    pub fn without(self, digest: &str) -> (Chain, Option<Vec<String>>) {
        let mut kept = Chain {
            plugins: Vec::new(),
            settings: Vec::new(),
            scopes: Vec::new(),
        };
        let mut dropped = None;
        let links = self.plugins.into_iter().zip(self.settings).zip(self.scopes);
        for (i, ((plugin, settings), scope)) in links.enumerate() {
            if i == 0 || plugin.digest != digest {
                kept.push(plugin, settings, scope);
            } else if dropped.is_none() {
                dropped = scope;
            }
        }
        (kept, dropped)
    }

    /// Appends a link.
    pub fn push(&mut self, plugin: LoadedPlugin, settings: String, scope: Option<Vec<String>>) {
        self.plugins.push(plugin);
        self.settings.push(settings);
        self.scopes.push(scope);
    }
}

/// Loads the default policy and every `[[plugin]]` of the inventory,
/// refusing any whose sha256 does not match its pin. Each file is checked
/// and hashed as it is read (never read whole first); a component pinned
/// twice is compiled once.
pub fn load_chain(host: &Host, inv: &Inventory) -> Result<Chain, BuildError> {
    let mut chain = Chain {
        plugins: Vec::with_capacity(inv.plugins.len() + 1),
        settings: Vec::with_capacity(inv.plugins.len() + 1),
        scopes: Vec::with_capacity(inv.plugins.len() + 1),
    };
    let default_policy = host.load_default_policy().map_err(|e| BuildError::Plugin {
        at: None,
        message: format!("{e:#}"),
    })?;
    chain.push(default_policy, inv.default_policy_settings.clone(), None);
    let mut once = LoadOnce::default();
    for p in &inv.plugins {
        let loaded = read_pinned(&p.path_text, &p.path, &p.sha256)
            .and_then(|source| once.load(host, &p.path_text, &source))
            .map_err(|e| BuildError::Plugin {
                at: Some(locate(inv, p.span.start)),
                message: format!("{e:#}"),
            })?;
        chain.push(loaded, p.settings_json.clone(), p.scope.clone());
    }
    Ok(chain)
}

/// Plans every node: runs the chain, returns the checked plans and the
/// plugins' log lines.
pub fn plan(
    host: &Host,
    inv: &Inventory,
    chain: &Chain,
) -> Result<(Vec<NodePlan>, Vec<PluginLog>), BuildError> {
    let links: Vec<ChainLink<'_>> = chain
        .plugins
        .iter()
        .zip(&chain.settings)
        .zip(&chain.scopes)
        .map(|((plugin, settings), scope)| ChainLink {
            plugin,
            settings,
            site_scope: scope.as_deref(),
        })
        .collect();
    let mut logs = Vec::new();
    match host.run_chain(&inv.site, &links, &mut logs) {
        Ok(plans) => Ok((plans, logs)),
        Err(errors) => {
            let locations = errors
                .iter()
                .map(|e| match &e.node {
                    // A node's failure points at the node's definition...
                    Some(node) => {
                        let index = inv.site.nodes.iter().position(|n| &n.name == node)?;
                        Some(locate(inv, inv.node_spans.get(index)?.start))
                    }
                    // ...a refusal of the settings at the key it names (else
                    // the table): [default_policy] for the default policy
                    // (link 0), the entry's `settings` for a [[plugin]];
                    // anything else at the [[plugin]] entry.
                    None => {
                        let (at, entry) = match e.link.checked_sub(1) {
                            None => (&inv.default_policy_at, None),
                            Some(i) => {
                                let p = inv.plugins.get(i)?;
                                (&p.settings_at, Some(p.span.clone()))
                            }
                        };
                        let span = e
                            .refused_settings
                            .then(|| at.find(e.setting.as_deref()))
                            .flatten()
                            .or(entry)?;
                        Some(locate(inv, span.start))
                    }
                })
                .collect();
            Err(BuildError::Policy {
                errors,
                logs,
                locations,
            })
        }
    }
}

/// Renders every node's artifacts (in site order).
pub fn render(
    inv: &Inventory,
    plans: &[NodePlan],
) -> Result<Vec<(String, NodeArtifacts)>, BuildError> {
    let all: Vec<usize> = (0..inv.site.nodes.len()).collect();
    render_some(inv, plans, &all)
}

/// As [`render`], for the nodes `which` (indices into `site.nodes`) only, in that order:
/// `haseed diff --node lb1` renders lb1, not the whole site.
pub fn render_some(
    inv: &Inventory,
    plans: &[NodePlan],
    which: &[usize],
) -> Result<Vec<(String, NodeArtifacts)>, BuildError> {
    let renderer = Renderer::new();
    let nodes = &inv.site.nodes;
    let one = |i: usize| {
        let node = &nodes[i];
        renderer
            .render_node_with(&inv.site, i as u32, &plans[i], &inv.node_extras[i])
            .map(|a| (node.name.clone(), a))
            .map_err(|e| BuildError::Render {
                node: node.name.clone(),
                message: format!("{e:#}"),
            })
    };
    // Nodes render independently (a 10,000-node site took 0.8 s on one thread).
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    map_in_order(which.len(), threads, |k| one(which[k]))
}

/// `(0..n).map(f).collect()`, computed in consecutive slices on up to `threads` threads: the
/// same values in the same order, and on failure the error of the lowest index that failed,
/// as one thread going through them in order would report. Below 64 items, on this thread.
fn map_in_order<T: Send, E: Send>(
    n: usize,
    threads: usize,
    f: impl Fn(usize) -> Result<T, E> + Sync,
) -> Result<Vec<T>, E> {
    if threads <= 1 || n < 64 {
        return (0..n).map(f).collect();
    }
    let per = n.div_ceil(threads);
    let parts: Vec<Result<Vec<T>, E>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..n)
            .step_by(per)
            .map(|from| {
                let f = &f;
                s.spawn(move || (from..(from + per).min(n)).map(f).collect())
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut all = Vec::with_capacity(n);
    for part in parts {
        all.extend(part?);
    }
    Ok(all)
}

/// Parses the site file (all problems reported at once).
pub fn load_inventory(path: &std::path::Path) -> Result<Inventory, BuildError> {
    inventory::load(path)
        .and_then(Inventory::refuse_unreachable)
        .map_err(BuildError::Inventory)
}

/// A place in the site file: shown as "FILE:LINE:COL" (1-based; the column counts
/// characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// The place of a byte offset into the inventory source.
pub fn locate(inv: &Inventory, offset: usize) -> Location {
    let (line, column) = line_col(&inv.source, offset);
    Location {
        file: display_path(&inv.path),
        line,
        column,
    }
}

fn display_path(path: &std::path::Path) -> String {
    PathBuf::from(path).display().to_string()
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..floor_char_boundary(source, offset)];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|s| s.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod map_in_order_tests {
    use super::map_in_order;

    #[test]
    fn same_values_in_the_same_order_on_any_number_of_threads() {
        for n in [0, 1, 63, 64, 65, 100, 1000] {
            let serial: Vec<usize> = (0..n).map(|i| i * 7 + 1).collect();
            for threads in 1..=9 {
                let got = map_in_order(n, threads, |i| Ok::<_, ()>(i * 7 + 1));
                assert_eq!(got, Ok(serial.clone()), "n {n}, threads {threads}");
            }
        }
    }

    #[test]
    fn the_first_failing_index_is_reported_as_one_thread_would() {
        // Items 70 and 900 fail: one thread going in order stops at 70; so must the slices,
        // though the slice holding 900 may finish first.
        for threads in 1..=9 {
            let got = map_in_order(1000, threads, |i| {
                if i == 70 || i == 900 {
                    Err(i)
                } else {
                    Ok(i)
                }
            });
            assert_eq!(got, Err(70), "threads {threads}");
        }
    }
}
