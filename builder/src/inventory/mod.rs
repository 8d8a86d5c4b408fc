//! The inventory stage: the site file (TOML) is parsed, checked and resolved into the
//! contract's [`Site`](crate::contract::Site), plus what the host needs besides (plugins,
//! default-policy settings, SSH keys, source spans of nodes).
//!
//! Every problem in the file is reported at once ([`Diagnostics`], sorted by position), each
//! pointing at the offending text. Nothing here panics on any input, and the work is linear in
//! the size of the file (hash maps for names and addresses).
//!
//! Stages: [`read`] walks the TOML document (`toml_edit`, which keeps spans) into raw typed
//! structs, reporting syntax, unknown keys, wrong types, missing keys and unknown words;
//! [`resolve`] checks values and cross references and fills indices, holders, backends and
//! VRIDs.

use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::contract;
use crate::diag::{Diagnostic, Diagnostics};

mod net;
mod read;
mod resolve;
pub mod schema;
mod stage;
#[cfg(test)]
mod tests;

pub use net::Cidr;

/// At most this many `[[plugin]]` entries. Every distinct plugin of a chain
/// is held compiled for the whole build (each up to
/// [`crate::policy::MAX_COMPONENT_BYTES`] of wasm and several times that of
/// native code) and runs once per node, so the count bounds the memory and
/// the time of a build. Real sites use one to three (the examples, the
/// plugins in plugins/); 32 leaves room for layered site policies while
/// keeping the worst case near 32 distinct components.
pub const MAX_PLUGINS: usize = 32;

/// Site files larger than this are refused before parsing.
pub const MAX_SITE_FILE_BYTES: usize = 8 * 1024 * 1024;

/// A parsed, checked and resolved site file.
#[derive(Debug, Clone, PartialEq)]
pub struct Inventory {
    /// The site file's path as given.
    pub path: PathBuf,
    /// The file's text (for diagnostics later).
    pub source: String,
    /// Resolved: indices, holders, backends and VRIDs all filled.
    pub site: contract::Site,
    /// In file order.
    pub plugins: Vec<PluginRef>,
    /// JSON text of `[default_policy]`, "{}" when absent.
    pub default_policy_settings: String,
    /// Where `[default_policy]` and its keys are, for the default policy's
    /// refusals.
    pub default_policy_at: SettingsAt,
    /// Parallel to `site.nodes`.
    pub node_extras: Vec<NodeExtra>,
    /// Byte span of each `[[node]]`'s name value, parallel to `site.nodes`.
    pub node_spans: Vec<Range<usize>>,
    /// `max_outage_ms` of each `[[vip]]`, parallel to `site.vips`: the
    /// objective `haseed lab` holds the VIP to (none: its default, 100 ms).
    pub vip_max_outage_ms: Vec<Option<u64>>,
    /// Problems that do not stop the build, sorted by position (see [`Inventory::warning_lines`]).
    pub warnings: Vec<Diagnostic>,
}

/// Where a settings table and its top-level keys are in the site file (the
/// stage overlay's text for a staged key), so that a plugin's refusal of a
/// setting points at the key's line (issue 21 item 7).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SettingsAt {
    /// The table (its header, or the inline table); None: not in the file.
    pub table: Option<Range<usize>>,
    /// Each top-level key.
    pub keys: Vec<(String, Range<usize>)>,
}

impl SettingsAt {
    /// The key's span, else the table's.
    pub fn find(&self, key: Option<&str>) -> Option<Range<usize>> {
        key.and_then(|k| self.keys.iter().find(|(n, _)| n == k))
            .map(|(_, s)| s.clone())
            .or_else(|| self.table.clone())
    }
}

/// One `[[plugin]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginRef {
    /// Resolved against the site file's directory (absolute paths stay as they are).
    pub path: PathBuf,
    /// The path as written in the file.
    pub path_text: String,
    /// Lowercase hex, 64 digits. Not checked against the file here.
    pub sha256: String,
    /// JSON object text, "{}" when the entry has no settings.
    pub settings_json: String,
    /// Where its `settings` table and their keys are.
    pub settings_at: SettingsAt,
    /// Span of the path value.
    pub span: Range<usize>,
    /// The plan fields the site lets it change (`scope`, checked paths); none: whatever the
    /// plugin itself declares.
    pub scope: Option<Vec<String>>,
}

/// Per-node data that is not part of the plugin contract.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeExtra {
    pub ssh_authorized_keys: Vec<String>,
    /// Span of the `ssh_authorized_keys` list that applies (the node's, else `[defaults]`);
    /// `None`: neither has one (see [`Inventory::login_checks`]).
    pub keys_span: Option<Range<usize>>,
    /// crypt(3) hash of the user's password (`password_hash`, checked); `None`: password
    /// login stays locked. Plaintext passwords are never kept.
    pub password_hash: Option<String>,
}

impl Inventory {
    /// A diagnostic pointing at node `node`'s name in the site file (for later stages, e.g.
    /// a plugin that failed on that node).
    pub fn node_diagnostic(&self, node: usize, message: impl Into<String>) -> Diagnostic {
        Diagnostic::error(&self.path, self.node_spans.get(node).cloned(), message)
    }

    /// `FILE:LINE:COL: warning: MESSAGE` for each warning (with its help, if any).
    pub fn warning_lines(&self) -> Vec<String> {
        self.warnings
            .iter()
            .map(|w| {
                let at = match w.line_col(&self.source) {
                    Some((l, c)) => format!("{}:{l}:{c}", self.path.display()),
                    None => self.path.display().to_string(),
                };
                match &w.help {
                    Some(h) => format!("{at}: warning: {}; {h}", w.message),
                    None => format!("{at}: warning: {}", w.message),
                }
            })
            .collect()
    }

    /// Nodes nobody could log into (issue 18 item 8: such a site built and flashed with exit
    /// 0): errors for nodes with no `ssh_authorized_keys` in the node or `[defaults]`, at the
    /// node; warnings for an explicit empty list (console-only nodes, or an EC2 key pair on
    /// AWS: a site says so on purpose), once per list. Returns (errors, warnings). The
    /// commands that make nodes run it ([`Inventory::refuse_unreachable`]); the parser does
    /// not, so a keyless site still parses for tools that only read it.
    pub fn login_checks(&self) -> (Vec<Diagnostic>, Vec<Diagnostic>) {
        let (mut errors, mut warnings) = (Vec::new(), Vec::new());
        let mut warned: Vec<&Range<usize>> = Vec::new();
        for (i, (node, extra)) in self.site.nodes.iter().zip(&self.node_extras).enumerate() {
            match &extra.keys_span {
                None => errors.push(
                    self.node_diagnostic(
                        i,
                        format!(
                            "node {} has no ssh_authorized_keys: nobody could log into it over SSH",
                            node.name
                        ),
                    )
                    .with_help(
                        "add ssh_authorized_keys = [\"ssh-ed25519 AAAA... you@host\"] to [defaults] \
                         or to the node; for nodes reached only on the console (or through an EC2 \
                         key pair) write ssh_authorized_keys = [] to say so",
                    ),
                ),
                Some(span) if extra.ssh_authorized_keys.is_empty() && !warned.contains(&span) => {
                    warned.push(span);
                    warnings.push(Diagnostic::error(
                        &self.path,
                        Some(span.clone()),
                        format!(
                            "ssh_authorized_keys is empty (node {} and any other node using this \
                             list): nobody can log in over SSH with a key from the site",
                            node.name
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        (errors, warnings)
    }

    /// [`Inventory::login_checks`] for a command that makes nodes: its errors refuse the
    /// site (all at once, at their lines); its warnings join [`Inventory::warnings`].
    pub fn refuse_unreachable(mut self) -> Result<Inventory, Diagnostics> {
        let (errors, warnings) = self.login_checks();
        if !errors.is_empty() {
            return Err(self.diagnostics(errors));
        }
        self.warnings.extend(warnings);
        self.warnings
            .sort_by_key(|w| w.span.as_ref().map_or(0, |s| s.start));
        Ok(self)
    }

    /// `Diagnostics` over this site file holding `items`.
    pub fn diagnostics(&self, items: Vec<Diagnostic>) -> Diagnostics {
        Diagnostics {
            file: self.path.clone(),
            source: self.source.clone(),
            items,
        }
    }
}

/// Reads and parses the site file. I/O problems, files over [`MAX_SITE_FILE_BYTES`] and
/// non-UTF-8 text are reported as a diagnostic without span.
pub fn load(path: &Path) -> Result<Inventory, Diagnostics> {
    load_stage(path, None)
}

/// [`load`] with stage `stage` (`[stage.NAME]` overlays) applied.
pub fn load_stage(path: &Path, stage: Option<&str>) -> Result<Inventory, Diagnostics> {
    let fail = |msg: String| Diagnostics::whole_file(path, "", msg);
    let file =
        std::fs::File::open(path).map_err(|e| fail(format!("cannot read the site file: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| fail(format!("cannot read the site file: {e}")))?;
    if meta.is_dir() {
        return Err(fail("the site file is a directory".into()));
    }
    if meta.len() > MAX_SITE_FILE_BYTES as u64 {
        return Err(fail(too_big(meta.len())));
    }
    let mut bytes = Vec::new();
    file.take(MAX_SITE_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("cannot read the site file: {e}")))?;
    if bytes.len() > MAX_SITE_FILE_BYTES {
        return Err(fail(too_big(bytes.len() as u64)));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        fail(format!(
            "the site file is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    parse_stage(path, &text, stage)
}

fn too_big(len: u64) -> String {
    format!(
        "the site file is too large ({len} bytes; the limit is {} MiB)",
        MAX_SITE_FILE_BYTES / (1024 * 1024)
    )
}

/// Parses, checks and resolves `source` (the text of the file at `path`; `path` is used for
/// messages and to resolve plugin paths). Pure: reads nothing.
pub fn parse(path: &Path, source: &str) -> Result<Inventory, Diagnostics> {
    parse_stage(path, source, None)
}

/// [`parse`] with stage `stage` applied: its overlays replace values of the base
/// before anything is checked, and `site.stage` carries its name. An unknown stage,
/// or an overlay naming what the base does not have, is an error at the overlay.
pub fn parse_stage(
    path: &Path,
    source: &str,
    stage: Option<&str>,
) -> Result<Inventory, Diagnostics> {
    if source.len() > MAX_SITE_FILE_BYTES {
        return Err(Diagnostics::whole_file(
            path,
            "",
            too_big(source.len() as u64),
        ));
    }
    let doc = match toml_edit::ImDocument::parse(source) {
        Ok(doc) => doc,
        Err(e) => {
            let message = e
                .message()
                .trim()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            let span = e.span().unwrap_or(0..0);
            let mut d = Diagnostics::new(path, source);
            d.push(Diagnostic::error(
                path,
                Some(span),
                format!("TOML syntax error: {message}"),
            ));
            return Err(d);
        }
    };
    let mut cx = read::Cx::new(path, source);
    let mut root = doc.as_table().clone();
    // Every stage's overlays must address what the base has, whichever is picked.
    for other in stage::names(&root) {
        if Some(other.as_str()) != stage {
            stage::apply(&mut cx, &mut root.clone(), Some(&other));
        }
    }
    let found = stage::apply(&mut cx, &mut root, stage);
    let mut raw = read::read_file(&mut cx, &root);
    if let (Some(name), Some(span)) = (stage, found) {
        // The stage picked on the command line names the build.
        raw.site.stage = Some(read::Sp {
            v: name.to_string(),
            span,
        });
    }
    let resolved = resolve::resolve(&mut cx, &raw, path);
    let mut diags = Diagnostics::new(path, source);
    diags.items = std::mem::take(&mut cx.diags);
    diags.finish()?;
    let mut warnings = std::mem::take(&mut cx.warnings);
    warnings.sort_by_key(|d| d.span.as_ref().map_or(0, |s| s.start));
    Ok(Inventory {
        path: path.to_path_buf(),
        source: source.to_string(),
        site: resolved.site,
        plugins: resolved.plugins,
        default_policy_settings: resolved.default_policy_settings,
        default_policy_at: resolved.default_policy_at,
        node_extras: resolved.node_extras,
        node_spans: resolved.node_spans,
        vip_max_outage_ms: resolved.vip_max_outage_ms,
        warnings,
    })
}

/// A JSON object as a TOML inline table (for `haseed plugin add --settings`):
/// the inverse of how `[[plugin]] settings` reach a plugin. JSON null has no
/// TOML form and is refused.
pub fn settings_table(json: &serde_json::Value) -> anyhow::Result<toml_edit::InlineTable> {
    fn value(v: &serde_json::Value, at: &str) -> anyhow::Result<toml_edit::Value> {
        Ok(match v {
            serde_json::Value::Null => anyhow::bail!("settings{at}: null has no TOML form"),
            serde_json::Value::Bool(b) => (*b).into(),
            serde_json::Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => i.into(),
                (None, Some(f)) => f.into(),
                _ => anyhow::bail!("settings{at}: {n} does not fit a TOML number"),
            },
            serde_json::Value::String(s) => s.as_str().into(),
            serde_json::Value::Array(items) => {
                let mut arr = toml_edit::Array::new();
                for (i, item) in items.iter().enumerate() {
                    arr.push(value(item, &format!("{at}[{i}]"))?);
                }
                toml_edit::Value::Array(arr)
            }
            serde_json::Value::Object(_) => toml_edit::Value::InlineTable(table(v, at)?),
        })
    }
    fn table(v: &serde_json::Value, at: &str) -> anyhow::Result<toml_edit::InlineTable> {
        let mut t = toml_edit::InlineTable::new();
        if let serde_json::Value::Object(map) = v {
            for (k, item) in map {
                t.insert(k, value(item, &format!("{at}.{k}"))?);
            }
        }
        Ok(t)
    }
    anyhow::ensure!(json.is_object(), "settings must be a JSON object");
    table(json, "")
}
