//! `--json`: one versioned envelope for every command's machine-readable output.
//!
//! With `--json` a command prints exactly one JSON document on stdout and nothing else there
//! (progress, compile notices and plugin log lines stay on stderr; warnings move into the
//! envelope). Its shape, schema 1:
//!
//! ```json
//! {
//!   "haseed": { "version": "0.1.0", "schema": 1, "command": "build", "contract": "0.2.0" },
//!   "ok": true,
//!   "...": "the command's own fields, next to these",
//!   "warnings": [ { "message": "...", "file": "site.toml", "line": 3, "column": 1 } ],
//!   "errors": [ { "message": "...", "file": "site.toml", "line": 9, "column": 8, "help": "..." } ]
//! }
//! ```
//!
//! - `haseed.version` is the crate version, `haseed.schema` this envelope's version (raised
//!   only when a field changes meaning or goes away; new fields may appear in any schema),
//!   `haseed.command` the command's words (`plan`, `plugin inspect`, ...), `haseed.contract`
//!   the plugin contract (WIT package `haseed:policy`) version this host runs.
//! - `ok` is true exactly when the command succeeded: the exit status is 0 and `errors` is
//!   empty. Exit codes are the same with and without `--json`.
//! - `warnings` and `errors` are always present (maybe empty), each entry a [`Notice`]:
//!   `message` always; `file`, `line`, `column` (1-based, columns in characters),
//!   `help`, `node` and `plugin` when known, absent otherwise.
//! - The command's own fields (e.g. `plan`'s `site` and `nodes`, `image`'s `images`) are
//!   listed in README's "JSON output" section; after an error they may be missing.
//!
//! Strings go through [`term::safe_json`](crate::term::safe_json): a plugin's or a site's
//! text cannot act on a terminal, and the document parses to the same values.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::process::ExitCode;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::Value;

use crate::diag::Diagnostics;
use crate::pipeline::{BuildError, Location};

/// The envelope's own version (`haseed.schema`).
pub const SCHEMA: u32 = 1;

/// One error or warning: a message and, when known, where it is and who said it.
#[derive(Serialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct Notice {
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
}

impl Notice {
    pub fn new(message: impl Into<String>) -> Notice {
        Notice {
            message: message.into(),
            ..Notice::default()
        }
    }

    /// At `at` (file, line and column), when there is a place.
    pub fn at(mut self, at: Option<&Location>) -> Notice {
        if let Some(at) = at {
            self.file = Some(at.file.clone());
            self.line = Some(at.line);
            self.column = Some(at.column);
        }
        self
    }

    pub fn node(mut self, node: impl Into<String>) -> Notice {
        self.node = Some(node.into());
        self
    }

    pub fn plugin(mut self, plugin: impl Into<String>) -> Notice {
        self.plugin = Some(plugin.into());
        self
    }

    /// Every item of a file's diagnostics (errors or warnings), located.
    pub fn from_diagnostics(d: &Diagnostics) -> Vec<Notice> {
        d.items
            .iter()
            .map(|item| {
                let mut n = Notice::new(&item.message);
                n.file = Some(item.file.display().to_string());
                if let Some((line, column)) = item.line_col(&d.source) {
                    n.line = Some(line);
                    n.column = Some(column);
                }
                n.help = item.help.clone();
                n
            })
            .collect()
    }

    /// The errors an error stands for: each located item of a site's diagnostics, each
    /// plugin's failure with its node and place, else the error's whole text.
    pub fn from_error(e: &anyhow::Error) -> Vec<Notice> {
        if let Some(build) = e.downcast_ref::<BuildError>() {
            return match build {
                BuildError::Inventory(d) => Notice::from_diagnostics(d),
                BuildError::Plugin { at, message } => {
                    vec![Notice::new(message).at(at.as_ref())]
                }
                BuildError::Policy {
                    errors, locations, ..
                } => errors
                    .iter()
                    .zip(locations)
                    .map(|(error, at)| {
                        let n = Notice::new(&error.message)
                            .at(at.as_ref())
                            .plugin(&error.plugin);
                        match &error.node {
                            Some(node) => n.node(node),
                            None => n,
                        }
                    })
                    .collect(),
                BuildError::Render { node, message } => {
                    vec![Notice::new(format!("rendering failed: {message}")).node(node)]
                }
            };
        }
        if let Some(d) = e.downcast_ref::<Diagnostics>() {
            return Notice::from_diagnostics(d);
        }
        if let Some(l) = e.downcast_ref::<Located>() {
            let mut n = Notice::new(&l.message).at(l.at.as_ref());
            n.node = l.node.clone();
            return vec![n];
        }
        vec![Notice::new(format!("{e:#}"))]
    }
}

/// An error about a place in the site file (and maybe a node): shown as
/// `FILE:LINE:COL: MESSAGE`, reported in JSON with the place in fields of its own.
#[derive(Debug)]
pub struct Located {
    pub at: Option<Location>,
    pub node: Option<String>,
    pub message: String,
}

impl std::fmt::Display for Located {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.at {
            Some(at) => write!(f, "{at}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Located {}

/// What a command run with `--json` gathers for its envelope: its fields, its warnings
/// and the errors it reports without failing outright (a validator's finding, a fixture).
/// Inert (and empty) without `--json`.
#[derive(Debug, Default)]
pub struct Sink {
    json: Cell<bool>,
    /// In the order the command set them (a key set again keeps its place).
    fields: RefCell<Vec<(String, Value)>>,
    warnings: RefCell<Vec<Notice>>,
    errors: RefCell<Vec<Notice>>,
}

impl Sink {
    /// Whether this run prints JSON (then nothing human goes to stdout).
    pub fn json(&self) -> bool {
        self.json.get()
    }

    pub fn set_json(&self, json: bool) {
        self.json.set(json)
    }

    /// Sets the command's field `key` (anything serializable).
    pub fn field(&self, key: &str, value: impl Serialize) -> anyhow::Result<()> {
        self.set(key.to_string(), serde_json::to_value(value)?);
        Ok(())
    }

    fn set(&self, key: String, value: Value) {
        let mut fields = self.fields.borrow_mut();
        match fields.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => fields.push((key, value)),
        }
    }

    /// Every field of `value` (a JSON object) as a field of the command.
    pub fn fields(&self, value: impl Serialize) -> anyhow::Result<()> {
        match serde_json::to_value(value)? {
            Value::Object(map) => {
                for (k, v) in map {
                    self.set(k, v);
                }
                Ok(())
            }
            other => anyhow::bail!("internal: envelope fields must be an object, not {other}"),
        }
    }

    pub fn warn(&self, notice: Notice) {
        self.warnings.borrow_mut().push(notice);
    }

    pub fn error(&self, notice: Notice) {
        self.errors.borrow_mut().push(notice);
    }

    /// The whole document, pretty-printed: `command` ended with `result` (its error, if
    /// any, becomes `errors` entries after the ones already reported). Keys in this order:
    /// `haseed`, `ok`, the command's fields as it set them, `warnings`, `errors`.
    pub fn document(&self, command: &str, result: &anyhow::Result<ExitCode>) -> String {
        let mut errors = self.errors.borrow().clone();
        if let Err(e) = result {
            errors.extend(Notice::from_error(e));
        }
        let ok = matches!(result, Ok(code) if *code == ExitCode::SUCCESS) && errors.is_empty();
        #[derive(Serialize)]
        struct Header<'a> {
            version: &'a str,
            schema: u32,
            command: &'a str,
            contract: &'a str,
        }
        let header = Header {
            version: env!("CARGO_PKG_VERSION"),
            schema: SCHEMA,
            command,
            contract: crate::contract::WIT_VERSION,
        };
        let mut buf = Vec::new();
        let mut ser = serde_json::Serializer::pretty(&mut buf);
        let written = (|| {
            let mut map = ser.serialize_map(None)?;
            map.serialize_entry("haseed", &header)?;
            map.serialize_entry("ok", &ok)?;
            for (key, value) in self.fields.borrow().iter() {
                if !["haseed", "ok", "warnings", "errors"].contains(&key.as_str()) {
                    map.serialize_entry(key, value)?;
                }
            }
            map.serialize_entry("warnings", &*self.warnings.borrow())?;
            map.serialize_entry("errors", &errors)?;
            map.end()
        })();
        written.expect("JSON values serialize into memory");
        String::from_utf8(buf).expect("serde_json writes UTF-8")
    }
}

/// Prints a [`Sink::document`] on stdout (terminal-safe, one trailing newline).
pub fn print(doc: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(crate::term::safe_json(doc).as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(sink: &Sink, command: &str, result: &anyhow::Result<ExitCode>) -> Value {
        serde_json::from_str(&sink.document(command, result)).expect("JSON")
    }

    #[test]
    fn envelope_has_header_fields_and_lists() {
        let sink = Sink::default();
        sink.set_json(true);
        sink.field("nodes", ["lb1"]).unwrap();
        sink.field("ok", "not mine").unwrap();
        sink.warn(Notice::new("careful").node("lb1"));
        sink.field("bundle", "x.tar.gz").unwrap();
        let text = sink.document("build", &Ok(ExitCode::SUCCESS));
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["haseed"]["schema"], SCHEMA);
        assert_eq!(doc["haseed"]["command"], "build");
        assert_eq!(doc["haseed"]["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(doc["ok"], true);
        assert_eq!(doc["nodes"][0], "lb1");
        assert_eq!(doc["warnings"][0]["node"], "lb1");
        assert_eq!(doc["warnings"][0].get("file"), None);
        assert_eq!(doc["errors"], serde_json::json!([]));
        // The fixed keys first, then the fields as set, the lists last; "ok" is not a field.
        let at = |key: &str| text.find(&format!("\n  \"{key}\": ")).expect(key);
        let order = ["haseed", "ok", "nodes", "bundle", "warnings", "errors"].map(at);
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert_eq!(text.matches("\"ok\"").count(), 1, "{text}");
    }

    #[test]
    fn a_failure_is_not_ok_and_lists_its_errors() {
        let sink = Sink::default();
        let doc = envelope(&sink, "plan", &Ok(ExitCode::FAILURE));
        assert_eq!(doc["ok"], false);
        let err = anyhow::Error::new(Located {
            at: Some(Location {
                file: "site.toml".into(),
                line: 3,
                column: 7,
            }),
            node: Some("lb1".into()),
            message: "too big".into(),
        })
        .context("making user-data");
        let doc = envelope(&sink, "user-data", &Err(err));
        assert_eq!(doc["ok"], false);
        assert_eq!(
            doc["errors"],
            serde_json::json!([{"message": "too big", "file": "site.toml", "line": 3,
                "column": 7, "node": "lb1"}])
        );
        let sink = Sink::default();
        sink.error(Notice::new("fixture x failed"));
        let doc = envelope(&sink, "plugin test", &Ok(ExitCode::SUCCESS));
        assert_eq!(doc["ok"], false);
        assert_eq!(doc["errors"][0]["message"], "fixture x failed");
    }

    #[test]
    fn diagnostics_become_located_errors() {
        let src = "[site]\nname = \"Bad Name\"\n";
        let mut d = Diagnostics::new("site.toml", src);
        d.push(
            crate::diag::Diagnostic::error("site.toml", Some(14..24), "bad site name")
                .with_help("use lowercase"),
        );
        let err = anyhow::Error::new(BuildError::Inventory(d.finish().unwrap_err()));
        let n = Notice::from_error(&err);
        assert_eq!(
            n,
            [Notice {
                message: "bad site name".into(),
                file: Some("site.toml".into()),
                line: Some(2),
                column: Some(8),
                help: Some("use lowercase".into()),
                node: None,
                plugin: None,
            }]
        );
    }
}
