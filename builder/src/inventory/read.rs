//! Stage 1: the TOML document (with spans, via `toml_edit`) into raw, typed-but-unchecked
//! structs. Unknown keys, wrong types, missing required keys and unknown enum words are
//! reported here, all of them, not just the first.

use std::ops::Range;
use std::path::Path;

use toml_edit::{Item, TableLike, Value};

use crate::contract::{Balance, Platform, ProxyMode, Role};
use crate::diag::Diagnostic;

pub(super) type Span = Range<usize>;

/// A value with the byte span of its text in the site file.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Sp<T> {
    pub v: T,
    pub span: Span,
}

pub(super) type List<T> = Sp<Vec<Sp<T>>>;

/// Collects diagnostics for one file.
pub(super) struct Cx<'a> {
    pub file: &'a Path,
    pub source: &'a str,
    pub diags: Vec<Diagnostic>,
    /// Problems that do not stop the build (e.g. an ignored plaintext password).
    pub warnings: Vec<Diagnostic>,
    /// When set, every key a reader asks for, with its type: what `haseed schema` is made of,
    /// so the schema and the reference cannot drift from the reader (see `schema.rs`).
    pub record: Option<Vec<KeyRead>>,
}

/// One key the reader asks for, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyRead {
    /// The table it is read from, as messages name it: "[[vip]]", "`check` in [[service]]".
    pub table: &'static str,
    pub key: String,
    pub kind: KeyKind,
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyKind {
    String,
    Integer,
    Boolean,
    Strings,
    /// One of these words.
    Choice(Vec<&'static str>),
    /// An array of these words.
    Words(Vec<&'static str>),
    /// A table, named by its `what`.
    Table(&'static str),
    /// An array of tables.
    Tables(&'static str),
    /// A free-form table handed to a plugin as JSON.
    Settings,
    /// Accepted and ignored, with a warning.
    Ignored,
}

impl<'a> Cx<'a> {
    pub fn new(file: &'a Path, source: &'a str) -> Self {
        Cx {
            file,
            source,
            diags: Vec::new(),
            warnings: Vec::new(),
            record: None,
        }
    }

    pub fn diag(&self, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic::error(self.file, Some(span), message)
    }

    pub fn err(&mut self, span: Span, message: impl Into<String>) {
        let d = self.diag(span, message);
        self.diags.push(d);
    }

    pub fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// The first line of `span` (a table's header rather than its whole body).
    fn first_line(&self, span: Span) -> Span {
        let text = self.source.get(span.clone()).unwrap_or("");
        match text.find(['\n', '\r']) {
            Some(i) => span.start..span.start + i,
            None => span,
        }
    }
}

/// A user-supplied string for a message: quoted, escaped, shortened.
pub(super) fn show(s: &str) -> String {
    const MAX: usize = 60;
    let mut out = String::from("`");
    for (i, c) in s.chars().enumerate() {
        if i == MAX {
            out.push('…');
            break;
        }
        // Bidi controls and line separators too (crate::term): a quoted value must not
        // reorder or break the message around it.
        if c.is_control() || crate::term::is_unsafe(c) || c == '`' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.push('`');
    out
}

/// A table of the file (a `[table]`, `[[array]]` element or `{ inline }` table).
#[derive(Clone)]
pub(super) struct Tbl<'t> {
    pub t: &'t dyn TableLike,
    /// How messages name it, e.g. "[[node]]" or "`check` in [[service]]".
    pub what: &'static str,
    /// Its header line (or the inline table).
    pub span: Span,
}

fn kind(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Value(v) => value_kind(v),
        Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "an array of tables",
    }
}

fn value_kind(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::InlineTable(_) => "a table",
    }
}

impl<'a> Cx<'a> {
    fn item_span(&self, item: &Item) -> Option<Span> {
        match item {
            Item::Table(t) => t.span().map(|s| self.first_line(s)),
            _ => item.span(),
        }
    }

    /// The span of the key `key` of `tbl` (falling back to its value, then the table).
    pub fn key_span(&self, tbl: &Tbl<'_>, key: &str) -> Span {
        tbl.t
            .key(key)
            .and_then(|k| k.span())
            .or_else(|| tbl.t.get(key).and_then(|i| self.item_span(i)))
            .unwrap_or_else(|| tbl.span.clone())
    }

    fn entry<'t>(&self, tbl: &Tbl<'t>, key: &str) -> Option<(&'t Item, Span)> {
        let item = tbl.t.get(key)?;
        if item.is_none() {
            return None;
        }
        let span = self
            .item_span(item)
            .unwrap_or_else(|| self.key_span(tbl, key));
        Some((item, span))
    }

    fn missing(&mut self, tbl: &Tbl<'_>, key: &str) {
        let d = self.diag(
            tbl.span.clone(),
            format!("{} is missing required key `{key}`", tbl.what),
        );
        self.push(d);
    }

    fn wrong_type(&mut self, tbl: &Tbl<'_>, key: &str, span: Span, want: &str, item: &Item) {
        self.err(
            span,
            format!(
                "`{key}` in {} must be {want}, found {}",
                tbl.what,
                kind(item)
            ),
        );
    }

    /// Records a key read from `tbl` (when recording; a later note of the same key wins).
    pub fn note(&mut self, tbl: &Tbl<'_>, key: &str, kind: KeyKind, required: bool) {
        if let Some(rec) = &mut self.record {
            rec.retain(|r| !(r.table == tbl.what && r.key == key));
            rec.push(KeyRead {
                table: tbl.what,
                key: key.to_string(),
                kind,
                required,
            });
        }
    }

    /// Reports every key of `tbl` not in `allowed`.
    pub fn check_keys(&mut self, tbl: &Tbl<'_>, allowed: &[&str]) {
        for (k, _) in tbl.t.iter() {
            if !allowed.contains(&k) {
                let span = self.key_span(tbl, k);
                let d = self
                    .diag(span, format!("unknown key {} in {}", show(k), tbl.what))
                    .with_help(format!("expected one of: {}", allowed.join(", ")));
                self.push(d);
            }
        }
    }

    pub fn string(&mut self, tbl: &Tbl<'_>, key: &str, required: bool) -> Option<Sp<String>> {
        self.note(tbl, key, KeyKind::String, required);
        let Some((item, span)) = self.entry(tbl, key) else {
            if required {
                self.missing(tbl, key);
            }
            return None;
        };
        match item.as_str() {
            Some(s) => Some(Sp {
                v: s.to_string(),
                span,
            }),
            None => {
                self.wrong_type(tbl, key, span, "a string", item);
                None
            }
        }
    }

    pub fn integer(&mut self, tbl: &Tbl<'_>, key: &str, required: bool) -> Option<Sp<i64>> {
        self.note(tbl, key, KeyKind::Integer, required);
        let Some((item, span)) = self.entry(tbl, key) else {
            if required {
                self.missing(tbl, key);
            }
            return None;
        };
        match item.as_integer() {
            Some(i) => Some(Sp { v: i, span }),
            None => {
                self.wrong_type(tbl, key, span, "an integer", item);
                None
            }
        }
    }

    pub fn boolean(&mut self, tbl: &Tbl<'_>, key: &str) -> Option<Sp<bool>> {
        self.note(tbl, key, KeyKind::Boolean, false);
        let (item, span) = self.entry(tbl, key)?;
        match item.as_bool() {
            Some(b) => Some(Sp { v: b, span }),
            None => {
                self.wrong_type(tbl, key, span, "true or false", item);
                None
            }
        }
    }

    /// An array of strings. A wrong element is reported and left out (the list is still
    /// returned, so `bad` tells whether it is complete).
    pub fn strings(&mut self, tbl: &Tbl<'_>, key: &str, required: bool) -> Option<List<String>> {
        self.note(tbl, key, KeyKind::Strings, required);
        let Some((item, span)) = self.entry(tbl, key) else {
            if required {
                self.missing(tbl, key);
            }
            return None;
        };
        let Some(arr) = item.as_array() else {
            self.wrong_type(tbl, key, span, "an array of strings", item);
            return None;
        };
        let mut out = Vec::with_capacity(arr.len());
        let mut ok = true;
        for (i, v) in arr.iter().enumerate() {
            let vspan = v.span().unwrap_or_else(|| span.clone());
            match v.as_str() {
                Some(s) => out.push(Sp {
                    v: s.to_string(),
                    span: vspan,
                }),
                None => {
                    ok = false;
                    self.err(
                        vspan,
                        format!(
                            "`{key}` in {} must be an array of strings; element {} is {}",
                            tbl.what,
                            i + 1,
                            value_kind(v)
                        ),
                    );
                }
            }
        }
        ok.then_some(Sp { v: out, span })
    }

    /// One word out of `options`; `noun` names it in messages ("unknown role `x`").
    pub fn choice<E: Copy>(
        &mut self,
        tbl: &Tbl<'_>,
        key: &str,
        required: bool,
        noun: &str,
        options: &[(&'static str, E)],
    ) -> Option<Sp<E>> {
        let s = self.string(tbl, key, required);
        self.note(
            tbl,
            key,
            KeyKind::Choice(options.iter().map(|(w, _)| *w).collect()),
            required,
        );
        self.word(&s?, noun, options)
    }

    pub fn word<E: Copy>(
        &mut self,
        s: &Sp<String>,
        noun: &str,
        options: &[(&str, E)],
    ) -> Option<Sp<E>> {
        match options.iter().find(|(w, _)| *w == s.v) {
            Some((_, e)) => Some(Sp {
                v: *e,
                span: s.span.clone(),
            }),
            None => {
                let words: Vec<&str> = options.iter().map(|(w, _)| *w).collect();
                let d = self.diag(
                    s.span.clone(),
                    format!(
                        "unknown {noun} {}; expected one of: {}",
                        show(&s.v),
                        words.join(", ")
                    ),
                );
                self.push(d);
                None
            }
        }
    }

    /// A sub-table (`[a.b]`, `b = { ... }` or dotted keys).
    pub fn table<'t>(&mut self, tbl: &Tbl<'t>, key: &str, what: &'static str) -> Option<Tbl<'t>> {
        self.note(tbl, key, KeyKind::Table(what), false);
        let (item, span) = self.entry(tbl, key)?;
        match item.as_table_like() {
            Some(t) => Some(Tbl { t, what, span }),
            None => {
                self.wrong_type(tbl, key, span, "a table", item);
                None
            }
        }
    }

    /// The tables of `[[key]]` (or `key = [{...}, ...]`).
    pub fn tables<'t>(&mut self, root: &Tbl<'t>, key: &str, what: &'static str) -> Vec<Tbl<'t>> {
        self.note(root, key, KeyKind::Tables(what), false);
        let Some((item, span)) = self.entry(root, key) else {
            return Vec::new();
        };
        match item {
            Item::ArrayOfTables(aot) => aot
                .iter()
                .map(|t| Tbl {
                    t: t as &dyn TableLike,
                    what,
                    span: t
                        .span()
                        .map(|s| self.first_line(s))
                        .unwrap_or_else(|| span.clone()),
                })
                .collect(),
            Item::Value(Value::Array(arr)) => {
                let mut out = Vec::with_capacity(arr.len());
                for v in arr.iter() {
                    let vspan = v.span().unwrap_or_else(|| span.clone());
                    match v.as_inline_table() {
                        Some(t) => out.push(Tbl {
                            t: t as &dyn TableLike,
                            what,
                            span: vspan,
                        }),
                        None => self.err(
                            vspan,
                            format!(
                                "`{key}` must be an array of tables ([[{key}]]); found {} in it",
                                value_kind(v)
                            ),
                        ),
                    }
                }
                out
            }
            _ => {
                self.err(
                    span,
                    format!(
                        "`{key}` must be an array of tables ([[{key}]]), found {}",
                        kind(item)
                    ),
                );
                Vec::new()
            }
        }
    }

    /// A table's contents as JSON text (for plugin settings). Non-finite floats cannot be
    /// represented and are reported; dates become strings.
    pub fn settings_json(&mut self, tbl: &Tbl<'_>) -> Option<String> {
        let mut ok = true;
        let v = self.table_json(tbl.t, &tbl.span, &mut ok);
        if !ok {
            return None;
        }
        serde_json::to_string(&v).ok()
    }

    fn table_json(&mut self, t: &dyn TableLike, span: &Span, ok: &mut bool) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for (k, item) in t.iter() {
            let s = self.item_span(item).unwrap_or_else(|| span.clone());
            let v = match item {
                Item::None => continue,
                Item::Value(v) => self.value_json(v, &s, ok),
                Item::Table(t) => self.table_json(t, &s, ok),
                Item::ArrayOfTables(a) => {
                    serde_json::Value::Array(a.iter().map(|t| self.table_json(t, &s, ok)).collect())
                }
            };
            map.insert(k.to_string(), v);
        }
        serde_json::Value::Object(map)
    }

    fn value_json(&mut self, v: &Value, span: &Span, ok: &mut bool) -> serde_json::Value {
        match v {
            Value::String(s) => serde_json::Value::String(s.value().clone()),
            Value::Integer(i) => serde_json::Value::from(*i.value()),
            Value::Float(f) => match serde_json::Number::from_f64(*f.value()) {
                Some(n) => serde_json::Value::Number(n),
                None => {
                    *ok = false;
                    self.err(
                        v.span().unwrap_or_else(|| span.clone()),
                        "settings cannot hold nan or inf (not representable in JSON)",
                    );
                    serde_json::Value::Null
                }
            },
            Value::Boolean(b) => serde_json::Value::Bool(*b.value()),
            Value::Datetime(d) => serde_json::Value::String(d.value().to_string()),
            Value::Array(a) => {
                let s = v.span().unwrap_or_else(|| span.clone());
                serde_json::Value::Array(a.iter().map(|x| self.value_json(x, &s, ok)).collect())
            }
            Value::InlineTable(t) => {
                let s = v.span().unwrap_or_else(|| span.clone());
                self.table_json(t, &s, ok)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Raw structs
// ---------------------------------------------------------------------------------------

pub(super) const PLATFORMS: &[(&str, Platform)] = &[
    ("raspios", Platform::Raspios),
    ("raspios-legacy", Platform::RaspiosLegacy),
    ("ubuntu-raspi", Platform::UbuntuRaspi),
    ("ubuntu", Platform::Ubuntu),
    ("aws", Platform::Aws),
];
pub(super) const ROLES: &[(&str, Role)] = &[
    ("lb", Role::Lb),
    ("master", Role::Master),
    ("worker", Role::Worker),
    ("controller", Role::Controller),
    ("db", Role::Db),
];
pub(super) const MODES: &[(&str, ProxyMode)] =
    &[("tcp", ProxyMode::Tcp), ("http", ProxyMode::Http)];
pub(super) const BALANCES: &[(&str, Balance)] = &[
    ("roundrobin", Balance::Roundrobin),
    ("source", Balance::Source),
    ("leastconn", Balance::Leastconn),
];
pub(super) const BINDS: &[(&str, bool)] = &[("any", false), ("vip", true)];

#[derive(Debug, Default)]
pub(super) struct RawSite {
    pub name: Option<Sp<String>>,
    pub stage: Option<Sp<String>>,
    pub vrid_base: Option<Sp<i64>>,
}

/// The keys `[defaults]` and `[[node]]` share.
#[derive(Debug, Default)]
pub(super) struct RawHostKeys {
    pub platform: Option<Sp<Platform>>,
    pub interface: Option<Sp<String>>,
    pub user: Option<Sp<String>>,
    pub ssh_authorized_keys: Option<List<String>>,
    /// crypt(3) hash for the user's password (console and sudo login).
    pub password_hash: Option<Sp<String>>,
    /// Where a plaintext `password` key is: its value is never read (nor kept).
    pub password: Option<Span>,
}

#[derive(Debug)]
pub(super) struct RawNetwork {
    pub name: Option<Sp<String>>,
    pub cidr: Option<Sp<String>>,
    pub gateway: Option<Sp<String>>,
    pub dns: Option<List<String>>,
    pub ntp: Option<List<String>>,
}

#[derive(Debug)]
pub(super) struct RawVip {
    pub span: Span,
    pub name: Option<Sp<String>>,
    pub address: Option<Sp<String>>,
    pub network: Option<Sp<String>>,
    pub holders: Option<List<String>>,
    /// Whether `holders` was given but could not be read (then no default applies).
    pub holders_bad: bool,
    pub vrid: Option<Sp<i64>>,
    pub master: Option<Sp<String>>,
    pub nopreempt: Option<Sp<bool>>,
    /// The failover objective `haseed lab` holds this VIP to.
    pub max_outage_ms: Option<Sp<i64>>,
    /// `[vip.aws]` / `aws = { ... }`: how the VIP moves on AWS.
    pub aws: Option<RawAws>,
}

/// How a VIP moves between AWS holders (`[vip.aws]`).
#[derive(Debug)]
pub(super) struct RawAws {
    /// The table's header (or inline table).
    pub span: Span,
    pub method: Option<Sp<AwsMethod>>,
    pub allocation_id: Option<Sp<String>>,
    pub route_tables: Option<List<String>>,
}

/// The word of `[vip.aws] method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AwsMethod {
    SecondaryIp,
    ElasticIp,
    RouteTable,
}

pub(super) const AWS_METHODS: &[(&str, AwsMethod)] = &[
    ("secondary-ip", AwsMethod::SecondaryIp),
    ("elastic-ip", AwsMethod::ElasticIp),
    ("route-table", AwsMethod::RouteTable),
];

#[derive(Debug, Default)]
pub(super) struct RawCheck {
    pub inter_ms: Option<Sp<i64>>,
    pub rise: Option<Sp<i64>>,
    pub fall: Option<Sp<i64>>,
    pub port: Option<Sp<i64>>,
    pub http: Option<Sp<String>>,
}

#[derive(Debug)]
pub(super) struct RawService {
    pub span: Span,
    pub name: Option<Sp<String>>,
    pub vip: Option<Sp<String>>,
    pub port: Option<Sp<i64>>,
    pub port_range: Option<Sp<String>>,
    /// `port` or `port_range` was present but of the wrong type.
    pub port_bad: bool,
    pub backend_role: Option<Sp<Role>>,
    pub backend_port: Option<Sp<i64>>,
    pub mode: Option<Sp<ProxyMode>>,
    pub balance: Option<Sp<Balance>>,
    pub check: RawCheck,
    pub bind_vip: Option<Sp<bool>>,
}

#[derive(Debug)]
pub(super) struct RawNode {
    pub span: Span,
    pub name: Option<Sp<String>>,
    pub roles: Option<List<Role>>,
    pub address: Option<Sp<String>>,
    pub network: Option<Sp<String>>,
    pub host: RawHostKeys,
}

#[derive(Debug)]
pub(super) struct RawPlugin {
    pub path: Option<Sp<String>>,
    pub sha256: Option<Sp<String>>,
    pub settings_json: Option<String>,
    pub settings_at: super::SettingsAt,
    pub allow_repeat: Option<Sp<bool>>,
    pub scope: Option<List<String>>,
}

#[derive(Debug, Default)]
pub(super) struct RawFile {
    pub site: RawSite,
    pub defaults: RawHostKeys,
    pub networks: Vec<RawNetwork>,
    pub vips: Vec<RawVip>,
    pub services: Vec<RawService>,
    pub nodes: Vec<RawNode>,
    pub plugins: Vec<RawPlugin>,
    pub default_policy_json: Option<String>,
    pub default_policy_at: super::SettingsAt,
}

const TOP_KEYS: &[&str] = &[
    "site",
    "defaults",
    "network",
    "vip",
    "service",
    "node",
    "plugin",
    "default_policy",
];
const SITE_KEYS: &[&str] = &["name", "stage", "vrid_base"];
pub(super) const HOST_KEYS: &[&str] = &[
    "platform",
    "interface",
    "user",
    "ssh_authorized_keys",
    "password_hash",
    "password",
];
pub(super) const NETWORK_KEYS: &[&str] = &["name", "cidr", "gateway", "dns", "ntp"];
pub(super) const VIP_KEYS: &[&str] = &[
    "name",
    "address",
    "network",
    "holders",
    "vrid",
    "master",
    "nopreempt",
    "max_outage_ms",
    "aws",
];
const AWS_KEYS: &[&str] = &["method", "allocation_id", "route_tables"];
pub(super) const SERVICE_KEYS: &[&str] = &[
    "name",
    "vip",
    "port",
    "port_range",
    "backend_role",
    "backend_port",
    "mode",
    "balance",
    "check",
    "bind",
];
const CHECK_KEYS: &[&str] = &["inter_ms", "rise", "fall", "port", "http"];
pub(super) const NODE_KEYS: &[&str] = &[
    "name",
    "roles",
    "address",
    "network",
    "platform",
    "interface",
    "user",
    "ssh_authorized_keys",
    "password_hash",
    "password",
];
const PLUGIN_KEYS: &[&str] = &["path", "sha256", "settings", "allow_repeat", "scope"];

/// Reads the whole document. Everything wrong at this level is in `cx.diags` afterwards.
pub(super) fn read_file(cx: &mut Cx<'_>, root: &dyn TableLike) -> RawFile {
    let root = Tbl {
        t: root,
        what: "the site file",
        span: 0..0,
    };
    cx.check_keys(&root, TOP_KEYS);
    let mut raw = RawFile::default();

    let site = cx.table(&root, "site", "[site]");
    cx.note(&root, "site", KeyKind::Table("[site]"), true);
    match site {
        Some(t) => {
            cx.check_keys(&t, SITE_KEYS);
            raw.site = RawSite {
                name: cx.string(&t, "name", true),
                stage: cx.string(&t, "stage", false),
                vrid_base: cx.integer(&t, "vrid_base", false),
            };
        }
        None => {
            if root.t.get("site").is_none() {
                cx.push(
                    Diagnostic::error(cx.file, None, "missing [site] table")
                        .with_help("add [site] with name = \"...\" at the top of the file"),
                );
            }
        }
    }

    if let Some(t) = cx.table(&root, "defaults", "[defaults]") {
        cx.check_keys(&t, HOST_KEYS);
        raw.defaults = read_host_keys(cx, &t);
    }

    for t in cx.tables(&root, "network", "[[network]]") {
        cx.check_keys(&t, NETWORK_KEYS);
        raw.networks.push(RawNetwork {
            name: cx.string(&t, "name", true),
            cidr: cx.string(&t, "cidr", true),
            gateway: cx.string(&t, "gateway", false),
            dns: cx.strings(&t, "dns", false),
            ntp: cx.strings(&t, "ntp", false),
        });
    }

    for t in cx.tables(&root, "vip", "[[vip]]") {
        cx.check_keys(&t, VIP_KEYS);
        let holders = cx.strings(&t, "holders", false);
        raw.vips.push(RawVip {
            name: cx.string(&t, "name", true),
            address: cx.string(&t, "address", true),
            network: cx.string(&t, "network", true),
            holders_bad: holders.is_none() && t.t.get("holders").is_some(),
            holders,
            vrid: cx.integer(&t, "vrid", false),
            master: cx.string(&t, "master", false),
            nopreempt: cx.boolean(&t, "nopreempt"),
            max_outage_ms: cx.integer(&t, "max_outage_ms", false),
            aws: cx.table(&t, "aws", "`aws` in [[vip]]").map(|a| {
                cx.check_keys(&a, AWS_KEYS);
                RawAws {
                    method: cx.choice(&a, "method", true, "AWS move method", AWS_METHODS),
                    allocation_id: cx.string(&a, "allocation_id", false),
                    route_tables: cx.strings(&a, "route_tables", false),
                    span: a.span,
                }
            }),
            span: t.span,
        });
    }

    for t in cx.tables(&root, "service", "[[service]]") {
        cx.check_keys(&t, SERVICE_KEYS);
        let port = cx.integer(&t, "port", false);
        let port_range = cx.string(&t, "port_range", false);
        let port_bad = (port.is_none() && t.t.get("port").is_some())
            || (port_range.is_none() && t.t.get("port_range").is_some());
        let check = match cx.table(&t, "check", "`check` in [[service]]") {
            Some(c) => {
                cx.check_keys(&c, CHECK_KEYS);
                RawCheck {
                    inter_ms: cx.integer(&c, "inter_ms", false),
                    rise: cx.integer(&c, "rise", false),
                    fall: cx.integer(&c, "fall", false),
                    port: cx.integer(&c, "port", false),
                    http: cx.string(&c, "http", false),
                }
            }
            None => RawCheck::default(),
        };
        raw.services.push(RawService {
            name: cx.string(&t, "name", true),
            vip: cx.string(&t, "vip", true),
            port,
            port_range,
            port_bad,
            backend_role: cx.choice(&t, "backend_role", true, "role", ROLES),
            backend_port: cx.integer(&t, "backend_port", false),
            mode: cx.choice(&t, "mode", false, "mode", MODES),
            balance: cx.choice(&t, "balance", false, "balance", BALANCES),
            check,
            bind_vip: cx.choice(&t, "bind", false, "bind", BINDS),
            span: t.span,
        });
    }

    for t in cx.tables(&root, "node", "[[node]]") {
        cx.check_keys(&t, NODE_KEYS);
        let roles = cx.strings(&t, "roles", true);
        cx.note(
            &t,
            "roles",
            KeyKind::Words(ROLES.iter().map(|(w, _)| *w).collect()),
            true,
        );
        let roles = roles.and_then(|list| {
            let mut out = Vec::with_capacity(list.v.len());
            let mut ok = true;
            for s in &list.v {
                match cx.word(s, "role", ROLES) {
                    Some(r) => out.push(r),
                    None => ok = false,
                }
            }
            ok.then_some(Sp {
                v: out,
                span: list.span,
            })
        });
        raw.nodes.push(RawNode {
            name: cx.string(&t, "name", true),
            roles,
            address: cx.string(&t, "address", true),
            network: cx.string(&t, "network", false),
            host: read_host_keys(cx, &t),
            span: t.span,
        });
    }

    let plugin_tables = cx.tables(&root, "plugin", "[[plugin]]");
    if let Some(extra) = plugin_tables.get(super::MAX_PLUGINS) {
        cx.err(
            extra.span.clone(),
            format!(
                "{} [[plugin]] entries; at most {} are allowed: merge the policies into fewer \
                 plugins (a plugin can read its own settings to do several jobs)",
                plugin_tables.len(),
                super::MAX_PLUGINS
            ),
        );
    }
    for t in plugin_tables.into_iter().take(super::MAX_PLUGINS) {
        cx.check_keys(&t, PLUGIN_KEYS);
        let table = cx.table(&t, "settings", "`settings` in [[plugin]]");
        let settings_at = table.as_ref().map(settings_at).unwrap_or_default();
        let settings_json = table.and_then(|s| cx.settings_json(&s));
        cx.note(&t, "settings", KeyKind::Settings, false);
        raw.plugins.push(RawPlugin {
            path: cx.string(&t, "path", true),
            sha256: cx.string(&t, "sha256", true),
            settings_json,
            settings_at,
            allow_repeat: cx.boolean(&t, "allow_repeat"),
            scope: cx.strings(&t, "scope", false),
        });
    }

    if let Some(t) = cx.table(&root, "default_policy", "[default_policy]") {
        raw.default_policy_at = settings_at(&t);
        raw.default_policy_json = cx.settings_json(&t);
    }
    cx.note(&root, "default_policy", KeyKind::Settings, false);

    raw
}

/// Where a settings table and each of its keys are: the key's text (the
/// stage overlay's for a staged key), else the value's, else the table's.
fn settings_at(t: &Tbl<'_>) -> super::SettingsAt {
    super::SettingsAt {
        table: Some(t.span.clone()),
        keys: t
            .t
            .iter()
            .map(|(k, item)| {
                let span =
                    t.t.key(k)
                        .and_then(|key| key.span())
                        .or_else(|| item.span())
                        .unwrap_or_else(|| t.span.clone());
                (k.to_string(), span)
            })
            .collect(),
    }
}

fn read_host_keys(cx: &mut Cx<'_>, t: &Tbl<'_>) -> RawHostKeys {
    RawHostKeys {
        platform: cx.choice(t, "platform", false, "platform", PLATFORMS),
        interface: cx.string(t, "interface", false),
        user: cx.string(t, "user", false),
        ssh_authorized_keys: cx.strings(t, "ssh_authorized_keys", false),
        password_hash: cx.string(t, "password_hash", false),
        password: {
            cx.note(t, "password", KeyKind::Ignored, false);
            t.t.get("password")
        }
        .filter(|i| !i.is_none())
        .map(|_| cx.key_span(t, "password")),
    }
}
