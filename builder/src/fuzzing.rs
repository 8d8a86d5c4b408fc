//! The properties the fuzz targets (`fuzz/`, cargo-fuzz) check, as plain functions so the
//! committed corpus replays in an ordinary `cargo test` (`tests/fuzz_corpus.rs`) without a
//! nightly toolchain. Not part of the API: hidden from the docs, may change at any time.
//!
//! Each property returns `Err(why)` when it is violated; a panic anywhere below is a violation
//! too (libFuzzer reports it, the replay test fails).

use std::fmt::Write as _;
use std::path::Path;

use arbitrary::Unstructured;
use serde_json::Value;

use crate::check::{self, fixture};
use crate::contract::{NodePlan, Site};
use crate::diag::Diagnostic;
use crate::inventory;
use crate::output;
use crate::render::Renderer;
use crate::validate::{self, Validators};

// ---------------------------------------------------------------------------------------------
// inventory: arbitrary bytes as a site file

/// What the inventory stage made of one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InventoryOutcome {
    Accepted,
    Rejected,
}

/// Diagnostics with no span are allowed only for these, which are about the file as a whole.
const WHOLE_FILE_MESSAGES: [&str; 2] = ["missing [site] table", "more error"];

/// Parses `data` (lossily decoded as UTF-8; invalid bytes become U+FFFD) as a site file.
/// Property: no panic; a rejection carries at least one diagnostic and every diagnostic is one
/// non-empty line whose span (and every label's span) lies inside the input on character
/// boundaries; an accepted site's cross references (indices) all point at existing entries.
pub fn inventory(data: &[u8]) -> Result<InventoryOutcome, String> {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("site.toml");
    match inventory::parse(path, &text) {
        Err(diags) => {
            if diags.items.is_empty() {
                return Err("rejected with no diagnostic".into());
            }
            for d in &diags.items {
                check_diagnostic(d, &text)?;
            }
            // Rendering (codespan snippets, line:column) must not panic either.
            let shown = diags.to_string();
            if !shown.contains("site.toml") {
                return Err(format!(
                    "rendered diagnostics do not name the file:\n{shown}"
                ));
            }
            Ok(InventoryOutcome::Rejected)
        }
        Ok(inv) => {
            check_site_indices(&inv.site)?;
            if inv.node_spans.len() != inv.site.nodes.len()
                || inv.node_extras.len() != inv.site.nodes.len()
            {
                return Err("node_spans/node_extras are not parallel to the nodes".into());
            }
            for s in &inv.node_spans {
                span_inside(s, &text).map_err(|e| format!("node span: {e}"))?;
            }
            for p in &inv.plugins {
                span_inside(&p.span, &text).map_err(|e| format!("plugin span: {e}"))?;
                serde_json::from_str::<Value>(&p.settings_json)
                    .map_err(|e| format!("plugin settings are not JSON: {e}"))?;
            }
            serde_json::from_str::<Value>(&inv.default_policy_settings)
                .map_err(|e| format!("default_policy settings are not JSON: {e}"))?;
            Ok(InventoryOutcome::Accepted)
        }
    }
}

fn check_diagnostic(d: &Diagnostic, text: &str) -> Result<(), String> {
    let m = &d.message;
    if m.trim().is_empty() || m.contains('\n') {
        return Err(format!(
            "diagnostic message is empty or not one line: {m:?}"
        ));
    }
    match &d.span {
        Some(s) => span_inside(s, text).map_err(|e| format!("{m:?}: {e}"))?,
        None if WHOLE_FILE_MESSAGES.iter().any(|w| m.contains(w)) => {}
        None => return Err(format!("diagnostic without a location: {m:?}")),
    }
    for (s, label) in &d.labels {
        span_inside(s, text).map_err(|e| format!("{m:?}, label {label:?}: {e}"))?;
    }
    Ok(())
}

fn span_inside(s: &std::ops::Range<usize>, text: &str) -> Result<(), String> {
    if s.start > s.end || s.end > text.len() {
        return Err(format!(
            "span {}..{} is outside the input ({} bytes)",
            s.start,
            s.end,
            text.len()
        ));
    }
    if !text.is_char_boundary(s.start) || !text.is_char_boundary(s.end) {
        return Err(format!(
            "span {}..{} cuts a character in two",
            s.start, s.end
        ));
    }
    Ok(())
}

/// Every index a resolved site carries points at an existing entry (later stages index with
/// them).
fn check_site_indices(site: &Site) -> Result<(), String> {
    let (nn, nv, nw) = (site.nodes.len(), site.vips.len(), site.networks.len());
    for n in &site.nodes {
        if n.network as usize >= nw {
            return Err(format!("node {} has network index {}", n.name, n.network));
        }
    }
    for v in &site.vips {
        if v.network as usize >= nw || v.holders.iter().any(|&h| h as usize >= nn) {
            return Err(format!("VIP {} has a dangling index", v.name));
        }
        if let Some(m) = v.master {
            if m as usize >= nn {
                return Err(format!("VIP {} has master index {m}", v.name));
            }
        }
    }
    for s in &site.services {
        if s.vip as usize >= nv || s.backends.iter().any(|&b| b as usize >= nn) {
            return Err(format!("service {} has a dangling index", s.name));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// plan_render: mutated plans -> checker -> renderer -> real validators

/// What became of one mutated plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanOutcome {
    /// The mutations made a value the contract's types cannot hold (e.g. 300 in a u8).
    Unrepresentable,
    /// The checker refused the plan (this many issues).
    Rejected(usize),
    /// The checker accepted it; it rendered and both daemons accepted the result.
    Accepted,
    /// Accepted and rendered, haproxy accepted it, but keepalived could not be asked on this
    /// host: the plan names a script program or script user the node would have (a package's
    /// binary, the node's login user) and this machine does not. `keepalived -t` checks both.
    HostLacks(String),
}

/// The fixed parts of the plan_render property: the reference site, templates, validators.
pub struct PlanRender {
    site: Site,
    renderer: Renderer,
    validators: Validators,
    root: bool,
}

/// The longest string a mutation makes (well over every size limit of the checker).
const MAX_GROWN_STRING: usize = 1 << 20;

/// Strings the mutator splices in: config syntax, whitespace, addresses, enum words.
const TOKENS: &[&str] = &[
    "",
    " ",
    "\t",
    "\n",
    "\r",
    "\0",
    "#",
    "!",
    "{",
    "}",
    "\"",
    "'",
    "\\",
    ";",
    ",",
    ":",
    "/",
    "..",
    "$",
    "%",
    "*",
    "=",
    "-",
    "\u{7f}",
    "\u{85}",
    "\u{2028}",
    "\u{feff}",
    "é",
    "0",
    "65535",
    "0.0.0.0",
    "255.255.255.255",
    "192.168.3.240",
    "192.168.3.240/24",
    "192.168.3.1",
    "fd00::1",
    "fd00::240",
    "::",
    "::1",
    "fe80::1%eth0",
    "127.0.0.1",
    "eth0",
    "lo",
    "root",
    "root:root",
    "nobody",
    "/usr/bin/pgrep",
    "/run/haseed/x",
    "/etc/passwd",
    "tcp",
    "http",
    "Tcp",
    "Http",
    "Roundrobin",
    "Source",
    "Leastconn",
    "Master",
    "Backup",
    "httpchk",
    "tcplog",
    "httplog",
    "forwardfor",
    "redispatch",
    "tcp-check",
    "GET /healthz",
    "chk_haproxy",
    "maint",
    "kube-apiserver",
    "ingress-http",
    "nodeport",
    "VI_k8s-api",
    "VI_ingress",
    "deb [signed-by=$KEY_FILE] https://x.invalid/ /",
    "net.ipv4.ip_forward",
    "1",
];

const NUMBERS: &[i64] = &[
    -1,
    0,
    1,
    2,
    3,
    7,
    8,
    9,
    10,
    59,
    60,
    99,
    100,
    101,
    254,
    255,
    256,
    999,
    1000,
    1001,
    1023,
    1024,
    2000,
    3000,
    0o640,
    0o755,
    0o777,
    0o4755,
    0o7777,
    0o10000,
    30000,
    32767,
    32768,
    65535,
    65536,
    86_400_000,
    i32::MAX as i64,
    i32::MIN as i64,
    u32::MAX as i64,
];

impl PlanRender {
    /// Finds the validators (an error names the missing Debian packages).
    pub fn new() -> anyhow::Result<Self> {
        Ok(PlanRender {
            site: fixture::site(),
            renderer: Renderer::new(),
            validators: Validators::find()?,
            root: validate::is_root(),
        })
    }

    /// Property: a plan built from a reference plan by the mutations `data` encodes either fails
    /// to deserialize, is refused by the checker with at least one issue, or renders without
    /// error to a haproxy.cfg that passes `haproxy -c -dW` and a keepalived.conf that passes
    /// `keepalived -t` (in a throwaway network namespace; needs root). Nothing panics.
    pub fn run(&self, data: &[u8]) -> Result<PlanOutcome, String> {
        let mut u = Unstructured::new(data);
        let (node, plan) = match self.mutate(&mut u) {
            Ok(Some(x)) => x,
            Ok(None) | Err(_) => return Ok(PlanOutcome::Unrepresentable),
        };
        self.check_render_validate(node, plan)
    }

    /// The mutated plan `data` encodes, and its node index (`None`: not representable).
    pub fn plan(&self, data: &[u8]) -> Option<(usize, NodePlan)> {
        self.mutate(&mut Unstructured::new(data)).ok().flatten()
    }

    fn mutate(&self, u: &mut Unstructured<'_>) -> arbitrary::Result<Option<(usize, NodePlan)>> {
        let node = u.choose_index(2)?;
        let base = if u.arbitrary::<bool>()? {
            fixture::full_plan(&self.site, node)
        } else {
            fixture::lb_plan(&self.site, node)
        };
        let mut tree = serde_json::to_value(&base).expect("plans serialize");
        let rounds = u.int_in_range(1..=8)?;
        for _ in 0..rounds {
            if u.is_empty() {
                break;
            }
            mutate_tree(&mut tree, u)?;
        }
        Ok(serde_json::from_value::<NodePlan>(tree)
            .ok()
            .map(|p| (node, p)))
    }

    /// The second half of the property, for a plan already built.
    pub fn check_render_validate(
        &self,
        node: usize,
        plan: NodePlan,
    ) -> Result<PlanOutcome, String> {
        let site = &self.site;
        // The other load balancer keeps its reference plan, the masters plan nothing.
        let mut plans: Vec<NodePlan> = site
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| match i {
                0 | 1 => fixture::lb_plan(site, i),
                _ => NodePlan::empty(&n.name),
            })
            .collect();
        plans[node] = plan;
        let plan = &plans[node];
        let mut issues = check::check_node(site, node as u32, plan);
        if issues.is_empty() {
            issues = check::check_site(site, &plans);
        }
        if !issues.is_empty() {
            for i in &issues {
                if i.message.trim().is_empty() || i.node.is_empty() {
                    return Err(format!("an issue without a message or node: {i:?}"));
                }
            }
            return Ok(PlanOutcome::Rejected(issues.len()));
        }
        let art = self
            .renderer
            .render_node(site, node as u32, plan, &[])
            .map_err(|e| format!("the checker accepted a plan the renderer refused: {e:#}"))?;
        let name = &site.nodes[node].name;
        let tmp = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let node_dir = tmp.path().join(name);
        for f in output::build_tree(&[(name.clone(), art)]) {
            let path = tmp.path().join(&f.rel);
            if !path.starts_with(&node_dir) {
                return Err(format!(
                    "a rendered file escapes the node: {}",
                    f.rel.display()
                ));
            }
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", path.display()))?;
            }
            std::fs::write(&path, &f.content).map_err(|e| format!("{}: {e}", path.display()))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode & 0o777))
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        let mut failures = String::new();
        let v = &self.validators;
        let lacks = host_lacks(plan);
        let mut findings = vec![validate::validate_haproxy(v, name, &node_dir, self.root)];
        if lacks.is_none() {
            findings.push(validate::validate_keepalived(
                v, name, &node_dir, self.root, false,
            ));
        }
        for f in findings {
            match f {
                Ok(Some(f)) if !f.ok => {
                    let text = std::fs::read_to_string(&f.file).unwrap_or_default();
                    let _ = write!(
                        failures,
                        "{} rejected {}:\n{}\n--- the file ---\n{text}\n",
                        f.validator,
                        f.file.display(),
                        f.output
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = writeln!(failures, "a validator could not run: {e:#}");
                }
            }
        }
        if failures.is_empty() {
            Ok(match lacks {
                Some(what) => PlanOutcome::HostLacks(what),
                None => PlanOutcome::Accepted,
            })
        } else {
            Err(format!(
                "the checker accepted a plan whose render a daemon rejects:\n{failures}"
            ))
        }
    }
}

/// What keepalived would look up on this host that only the node has: a script user other
/// than root, a script or notify program the plan does not write.
fn host_lacks(plan: &NodePlan) -> Option<String> {
    let k = plan.keepalived.as_ref()?;
    if k.script_user != "root" {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let known = passwd
            .lines()
            .any(|l| l.split(':').next() == Some(k.script_user.as_str()));
        if !known {
            return Some(format!("user {}", k.script_user));
        }
    }
    let notify = k.instances.iter().flat_map(|i| {
        [&i.notify_master, &i.notify_backup, &i.notify_fault]
            .into_iter()
            .flatten()
    });
    for cmd in k.scripts.iter().map(|s| &s.command).chain(notify) {
        let Some(prog) = cmd.first() else { continue };
        let written = plan.files.iter().any(|f| &f.path == prog);
        if !written && !Path::new(prog).is_file() {
            return Some(format!("program {prog}"));
        }
    }
    None
}

/// A pointer to one value of the tree: the keys/indices from the root.
type TreePath = Vec<Step>;

#[derive(Clone)]
enum Step {
    Key(String),
    Index(usize),
}

fn paths(v: &Value, at: &mut TreePath, out: &mut Vec<TreePath>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                at.push(Step::Key(k.clone()));
                paths(x, at, out);
                at.pop();
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                at.push(Step::Index(i));
                paths(x, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn get_mut<'a>(v: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, s| match s {
        Step::Key(k) => v.get_mut(k.as_str()),
        Step::Index(i) => v.get_mut(*i),
    })
}

fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(m) => m.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// One mutation at one place of the plan's JSON form.
fn mutate_tree(tree: &mut Value, u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let mut all = Vec::new();
    paths(tree, &mut Vec::new(), &mut all);
    let path = all[u.choose_index(all.len())?].clone();
    let mut pool = Vec::new();
    strings(tree, &mut pool);
    let donor = tree.clone();
    let Some(target) = get_mut(tree, &path) else {
        return Ok(());
    };
    match target {
        Value::String(s) => {
            *s = match u.int_in_range(0..=5u8)? {
                0 => u.choose(TOKENS)?.to_string(),
                1 => u.arbitrary::<String>()?,
                2 => pool[u.choose_index(pool.len())?].clone(),
                3 => {
                    let mut at = u.int_in_range(0..=s.len())?;
                    while !s.is_char_boundary(at) {
                        at -= 1;
                    }
                    let mut t = s.clone();
                    t.insert_str(at, u.choose(TOKENS)?);
                    t
                }
                4 => {
                    let mut at = u.int_in_range(0..=s.len())?;
                    while !s.is_char_boundary(at) {
                        at -= 1;
                    }
                    s[..at].to_string()
                }
                _ => {
                    // Bounded: repeated rounds would otherwise multiply a string into gigabytes
                    // (the first 10-minute run hit libFuzzer's RSS limit this way).
                    let n: usize = u.int_in_range(2..=40)?;
                    if s.len().saturating_mul(n) <= MAX_GROWN_STRING {
                        s.repeat(n)
                    } else {
                        s.clone()
                    }
                }
            }
        }
        Value::Number(n) => {
            let old = n.as_i64().unwrap_or(0);
            let new = match u.int_in_range(0..=2u8)? {
                0 => *u.choose(NUMBERS)?,
                1 => old.saturating_add(u.int_in_range(-3..=3)?),
                _ => u.arbitrary::<i32>()? as i64,
            };
            *target = Value::from(new);
        }
        Value::Bool(b) => *b = !*b,
        Value::Null => {
            // An absent optional value gets one: a number, a string, a list of strings or a
            // copy of some other value (whichever the field's type takes).
            *target = match u.int_in_range(0..=3u8)? {
                0 => Value::from(*u.choose(NUMBERS)?),
                1 => Value::from(u.choose(TOKENS)?.to_string()),
                2 => Value::from(vec![pool[u.choose_index(pool.len())?].clone()]),
                _ => {
                    let mut donors = Vec::new();
                    paths(&donor, &mut Vec::new(), &mut donors);
                    let d = &donors[u.choose_index(donors.len())?];
                    get_mut(&mut donor.clone(), d)
                        .cloned()
                        .unwrap_or(Value::Null)
                }
            };
        }
        Value::Array(a) => match (u.int_in_range(0..=3u8)?, a.len()) {
            (_, 0) => a.push(Value::from(u.choose(TOKENS)?.to_string())),
            (0, n) => {
                a.remove(u.choose_index(n)?);
            }
            (1, n) => {
                let i = u.choose_index(n)?;
                let x = a[i].clone();
                a.insert(i, x);
            }
            (2, n) => a.swap(u.choose_index(n)?, u.choose_index(n)?),
            _ => a.clear(),
        },
        Value::Object(_) => {
            // An optional section (haproxy, keepalived, a check, ...) goes away.
            if !path.is_empty() {
                *target = Value::Null;
            }
        }
    }
    Ok(())
}
