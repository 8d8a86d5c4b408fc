//! The plan checker: everything a plugin returns is checked here before any
//! renderer sees it. Plugins are untrusted, so this is the wall between a
//! plugin's strings and a configuration file: names, addresses, ports and
//! ranges, modes, option keywords, script commands, paths and sizes are
//! checked against narrow grammars, and no string that reaches a config file
//! may carry a line break, quote, brace or comment marker.
//!
//! Pure and linear: `check_node` is O(size of the plan), `check_site`
//! O(total VRRP instances) with a hash map.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;

use crate::contract::{NodePlan, ProxyMode, Site, VrrpState};

/// One problem in one node's plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanIssue {
    pub node: String,
    /// Where in the plan, e.g. "haproxy.backends[0].servers[1].name".
    pub field: String,
    pub message: String,
}

impl fmt::Display for PlanIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {}: {}: {}", self.node, self.field, self.message)
    }
}

/// haproxy `option` keywords a plan may use (`httpchk` comes from `http-check`).
const HAPROXY_OPTIONS: &[&str] = &[
    "tcplog",
    "httplog",
    "dontlognull",
    "redispatch",
    "tcp-check",
    "tcpka",
    "forwardfor",
    "http-server-close",
    "http-keep-alive",
    "log-health-checks",
    "abortonclose",
    "allbackups",
    "splice-auto",
    "clitcpka",
    "srvtcpka",
];

/// Where plan files may be written on the node.
pub const ALLOWED_ROOTS: &[&str] = &[
    "/etc/",
    "/usr/local/bin/",
    "/usr/local/sbin/",
    "/usr/local/lib/haseed/",
    "/var/lib/haseed/",
];

/// Paths no plugin may write, even under an allowed root.
const FORBIDDEN_PATHS: &[&str] = &[
    "/etc/haproxy/haproxy.cfg",
    "/etc/keepalived/keepalived.conf",
    "/etc/sysctl.d/90-haseed.conf",
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/passwd",
    "/etc/group",
];
const FORBIDDEN_PREFIXES: &[&str] = &["/etc/sudoers", "/etc/ssh/", "/etc/cloud/"];

const TRACK_FILE_ROOTS: &[&str] = &["/run/haseed/", "/var/run/haseed/", "/var/lib/haseed/"];

const MAX_FILE_BYTES: usize = 1 << 20;
const MAX_FILES: usize = 256;
const MAX_SERVERS: usize = 10_000;
const MAX_PROXIES: usize = 1_000;

struct Checker<'a> {
    node: &'a str,
    issues: Vec<PlanIssue>,
}

impl Checker<'_> {
    fn fail(&mut self, field: impl Into<String>, message: impl Into<String>) {
        if self.issues.len() < 100 {
            self.issues.push(PlanIssue {
                node: self.node.to_string(),
                field: field.into(),
                message: message.into(),
            });
        }
    }

    /// `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`: proxy, server, script and instance names.
    fn name(&mut self, field: &str, value: &str) {
        let ok = !value.is_empty()
            && value.len() <= 64
            && value.as_bytes()[0].is_ascii_alphanumeric()
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !ok {
            self.fail(
                field,
                format!(
                    "{} is not a valid name (letters, digits, '.', '_', '-'; up to 64; starting with a letter or digit)",
                    shown(value)
                ),
            );
        }
    }

    fn ip(&mut self, field: &str, value: &str) -> Option<IpAddr> {
        match value.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.fail(field, format!("{} is not an IP address", shown(value)));
                None
            }
        }
    }

    fn range(&mut self, field: &str, value: u64, lo: u64, hi: u64) {
        if value < lo || value > hi {
            self.fail(field, format!("{value} is out of range {lo}..={hi}"));
        }
    }

    fn unique<'s>(&mut self, field: &str, names: impl Iterator<Item = &'s str>) {
        let mut seen = HashSet::new();
        for (i, name) in names.enumerate() {
            if !seen.insert(name) {
                self.fail(
                    format!("{field}[{i}].name"),
                    format!("duplicate name {}", shown(name)),
                );
            }
        }
    }

    fn options(&mut self, field: &str, options: &[String], mode: Option<ProxyMode>) {
        for (i, o) in options.iter().enumerate() {
            if !HAPROXY_OPTIONS.contains(&o.as_str()) {
                self.fail(
                    format!("{field}[{i}]"),
                    format!(
                        "unknown haproxy option {}; allowed: {}",
                        shown(o),
                        HAPROXY_OPTIONS.join(", ")
                    ),
                );
            } else if o == "httplog" && mode == Some(ProxyMode::Tcp) {
                self.fail(
                    format!("{field}[{i}]"),
                    "option httplog needs mode http (haproxy warns and falls back to tcplog)",
                );
            }
        }
    }

    /// An argv element of a keepalived script or notify command.
    fn command(&mut self, field: &str, command: &[String]) {
        if command.is_empty() {
            self.fail(field, "empty command");
            return;
        }
        if !command[0].starts_with('/') {
            self.fail(
                format!("{field}[0]"),
                format!("{} must be an absolute path", shown(&command[0])),
            );
        }
        for (i, arg) in command.iter().enumerate() {
            let ok = !arg.is_empty()
                && arg.len() <= 256
                && arg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._/:=@%+,-".contains(&b));
            if !ok {
                self.fail(
                    format!("{field}[{i}]"),
                    format!(
                        "{} may contain only letters, digits and ._/:=@%+,- (no spaces, quotes, '#', braces or line breaks)",
                        shown(arg)
                    ),
                );
            }
        }
    }

    fn path(&mut self, field: &str, path: &str) -> bool {
        let ok = path.starts_with('/')
            && path.len() <= 255
            && !path.ends_with('/')
            && !path.contains("//")
            && !path.split('/').any(|seg| seg == ".." || seg == ".")
            && path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._/@+-".contains(&b));
        if !ok {
            self.fail(
                field,
                format!(
                    "{} is not a clean absolute path (letters, digits and ._/@+-, no '..')",
                    shown(path)
                ),
            );
        }
        ok
    }
}

/// A value as shown in a message: quoted, escaped, cut short.
fn shown(value: &str) -> String {
    let mut s = format!("{value:?}");
    if s.len() > 80 {
        let mut cut = 77;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Checks one node's plan.
pub fn check_node(site: &Site, node: u32, plan: &NodePlan) -> Vec<PlanIssue> {
    let name = site
        .nodes
        .get(node as usize)
        .map(|n| n.name.as_str())
        .unwrap_or("?");
    let mut c = Checker {
        node: name,
        issues: Vec::new(),
    };
    if !is_hostname(&plan.hostname) {
        c.fail(
            "hostname",
            format!(
                "{} is not a hostname (lowercase letters, digits, '-')",
                shown(&plan.hostname)
            ),
        );
    }
    if let Some(h) = &plan.haproxy {
        check_haproxy(&mut c, h);
    }
    if let Some(k) = &plan.keepalived {
        check_keepalived(&mut c, k);
    }
    for (i, p) in plan.packages.iter().enumerate() {
        let (pkg, version) = match p.split_once('=') {
            Some((a, b)) => (a, Some(b)),
            None => (p.as_str(), None),
        };
        let ok = pkg.len() >= 2
            && pkg.len() <= 100
            && pkg.as_bytes()[0].is_ascii_alphanumeric()
            && pkg
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+.-".contains(&b))
            && version.is_none_or(|v| {
                !v.is_empty()
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".+~:-".contains(&b))
            });
        if !ok {
            c.fail(
                format!("packages[{i}]"),
                format!("{} is not a Debian package name", shown(p)),
            );
        }
    }
    for (i, s) in plan.services.iter().enumerate() {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"@._-".contains(&b));
        if !ok {
            c.fail(
                format!("services[{i}]"),
                format!("{} is not a systemd unit name", shown(s)),
            );
        }
    }
    for (i, s) in plan.sysctls.iter().enumerate() {
        let key_ok = s.key.contains('.')
            && s.key.len() <= 128
            && s.key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-/".contains(&b));
        if !key_ok {
            c.fail(
                format!("sysctls[{i}].key"),
                format!("{} is not a sysctl key", shown(&s.key)),
            );
        }
        let value_ok = s.value.len() <= 256
            && s.value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b" ._:,/-".contains(&b));
        if !value_ok {
            c.fail(
                format!("sysctls[{i}].value"),
                format!("{} is not a plain sysctl value", shown(&s.value)),
            );
        }
    }
    for (i, w) in plan.kernel_cmdline.iter().enumerate() {
        let ok = !w.is_empty()
            && w.len() <= 256
            && w.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\'');
        if !ok {
            c.fail(
                format!("kernel_cmdline[{i}]"),
                format!("{} is not one kernel command-line word", shown(w)),
            );
        }
    }
    check_files(&mut c, plan);
    for (i, w) in plan.warnings.iter().enumerate() {
        if w.len() > 1000 || w.chars().any(char::is_control) {
            c.fail(
                format!("warnings[{i}]"),
                "a warning must be one line of at most 1000 bytes",
            );
        }
    }
    c.issues
}

fn check_haproxy(c: &mut Checker<'_>, h: &crate::contract::HaproxyConfig) {
    if let Some(m) = h.global.maxconn {
        c.range("haproxy.global.maxconn", m as u64, 1, 10_000_000);
    }
    let d = &h.defaults;
    c.range("haproxy.defaults.retries", d.retries as u64, 0, 100);
    for (field, v) in [
        (
            "haproxy.defaults.timeout_connect_ms",
            Some(d.timeout_connect_ms),
        ),
        (
            "haproxy.defaults.timeout_client_ms",
            Some(d.timeout_client_ms),
        ),
        (
            "haproxy.defaults.timeout_server_ms",
            Some(d.timeout_server_ms),
        ),
        ("haproxy.defaults.timeout_check_ms", d.timeout_check_ms),
    ] {
        if let Some(v) = v {
            c.range(field, v as u64, 1, 86_400_000);
        }
    }
    c.options("haproxy.defaults.options", &d.options, Some(d.mode));
    if h.frontends.len() > MAX_PROXIES || h.backends.len() > MAX_PROXIES {
        c.fail(
            "haproxy",
            format!("more than {MAX_PROXIES} frontends or backends"),
        );
        return;
    }
    c.unique(
        "haproxy.frontends",
        h.frontends.iter().map(|f| f.name.as_str()),
    );
    c.unique(
        "haproxy.backends",
        h.backends.iter().map(|b| b.name.as_str()),
    );
    let backends: HashMap<&str, &crate::contract::Backend> =
        h.backends.iter().map(|b| (b.name.as_str(), b)).collect();
    for (i, f) in h.frontends.iter().enumerate() {
        let at = format!("haproxy.frontends[{i}]");
        c.name(&format!("{at}.name"), &f.name);
        if let Some(addr) = &f.bind_address {
            c.ip(&format!("{at}.bind_address"), addr);
        }
        check_ports(c, &at, f.port_first, f.port_last);
        c.options(&format!("{at}.options"), &f.options, Some(f.mode));
        match backends.get(f.backend.as_str()) {
            None => c.fail(
                format!("{at}.backend"),
                format!("no backend named {}", shown(&f.backend)),
            ),
            Some(b) if b.mode != f.mode => c.fail(
                format!("{at}.mode"),
                format!(
                    "frontend mode {} differs from backend {}'s mode {}",
                    f.mode.as_str(),
                    b.name,
                    b.mode.as_str()
                ),
            ),
            Some(_) => {}
        }
        if let Some(uri) = &f.monitor_uri {
            if f.mode != ProxyMode::Http {
                c.fail(format!("{at}.monitor_uri"), "monitor-uri needs mode http");
            }
            if !is_uri_path(uri) {
                c.fail(
                    format!("{at}.monitor_uri"),
                    format!("{} is not a plain URI path", shown(uri)),
                );
            }
        }
    }
    for (i, b) in h.backends.iter().enumerate() {
        let at = format!("haproxy.backends[{i}]");
        c.name(&format!("{at}.name"), &b.name);
        c.options(&format!("{at}.options"), &b.options, Some(b.mode));
        if let Some(hc) = &b.http_check {
            let mut parts = hc.split(' ');
            let ok = matches!(parts.next(), Some("GET" | "HEAD" | "OPTIONS" | "POST"))
                && parts.next().is_some_and(is_uri_path)
                && parts.next().is_none();
            if !ok {
                c.fail(
                    format!("{at}.http_check"),
                    format!(
                        "{} must be \"METHOD /path\" (GET, HEAD, OPTIONS or POST)",
                        shown(hc)
                    ),
                );
            }
        }
        if b.servers.len() > MAX_SERVERS {
            c.fail(
                format!("{at}.servers"),
                format!("more than {MAX_SERVERS} servers"),
            );
            continue;
        }
        c.unique(
            &format!("{at}.servers"),
            b.servers.iter().map(|s| s.name.as_str()),
        );
        for (j, s) in b.servers.iter().enumerate() {
            let sat = format!("{at}.servers[{j}]");
            c.name(&format!("{sat}.name"), &s.name);
            c.ip(&format!("{sat}.address"), &s.address);
            if let Some(p) = s.port {
                c.range(&format!("{sat}.port"), p as u64, 1, 65535);
            }
            if let Some(w) = s.weight {
                c.range(&format!("{sat}.weight"), w as u64, 0, 256);
            }
            if let Some(chk) = &s.check {
                c.range(
                    &format!("{sat}.check.inter_ms"),
                    chk.inter_ms as u64,
                    10,
                    3_600_000,
                );
                c.range(&format!("{sat}.check.rise"), chk.rise as u64, 1, 1000);
                c.range(&format!("{sat}.check.fall"), chk.fall as u64, 1, 1000);
                if let Some(p) = chk.port {
                    c.range(&format!("{sat}.check.port"), p as u64, 1, 65535);
                }
            }
        }
    }
}

fn check_ports(c: &mut Checker<'_>, at: &str, first: u16, last: u16) {
    if first == 0 {
        c.fail(format!("{at}.port_first"), "port 0 is not a port");
    }
    if last < first {
        c.fail(
            format!("{at}.port_last"),
            format!("port range {first}-{last} ends before it starts"),
        );
    }
}

fn is_uri_path(s: &str) -> bool {
    s.starts_with('/')
        && s.len() <= 256
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"\"'#\\{}".contains(&b))
}

fn check_keepalived(c: &mut Checker<'_>, k: &crate::contract::KeepalivedConfig) {
    for (field, v) in [
        ("keepalived.router_id", &k.router_id),
        ("keepalived.script_user", &k.script_user),
    ] {
        c.name(field, v);
    }
    c.unique(
        "keepalived.scripts",
        k.scripts.iter().map(|s| s.name.as_str()),
    );
    c.unique(
        "keepalived.track_files",
        k.track_files.iter().map(|t| t.name.as_str()),
    );
    c.unique(
        "keepalived.instances",
        k.instances.iter().map(|i| i.name.as_str()),
    );
    for (i, s) in k.scripts.iter().enumerate() {
        let at = format!("keepalived.scripts[{i}]");
        c.name(&format!("{at}.name"), &s.name);
        c.command(&format!("{at}.command"), &s.command);
        c.range(&format!("{at}.interval_s"), s.interval_s as u64, 1, 3600);
        if let Some(t) = s.timeout_s {
            c.range(&format!("{at}.timeout_s"), t as u64, 1, 3600);
        }
        c.range(&format!("{at}.rise"), s.rise as u64, 1, 1000);
        c.range(&format!("{at}.fall"), s.fall as u64, 1, 1000);
        if !(-253..=253).contains(&s.weight) {
            c.fail(
                format!("{at}.weight"),
                format!("{} is out of range -253..=253", s.weight),
            );
        }
    }
    for (i, t) in k.track_files.iter().enumerate() {
        let at = format!("keepalived.track_files[{i}]");
        c.name(&format!("{at}.name"), &t.name);
        if c.path(&format!("{at}.path"), &t.path)
            && !TRACK_FILE_ROOTS.iter().any(|r| t.path.starts_with(r))
        {
            c.fail(
                format!("{at}.path"),
                format!("track files live under {}", TRACK_FILE_ROOTS.join(", ")),
            );
        }
        if !(-253..=253).contains(&t.weight) {
            c.fail(
                format!("{at}.weight"),
                format!("{} is out of range -253..=253", t.weight),
            );
        }
    }
    if k.instances.len() > 255 {
        c.fail("keepalived.instances", "more than 255 VRRP instances");
        return;
    }
    let scripts: HashSet<&str> = k.scripts.iter().map(|s| s.name.as_str()).collect();
    let tracks: HashSet<&str> = k.track_files.iter().map(|t| t.name.as_str()).collect();
    for (i, inst) in k.instances.iter().enumerate() {
        let at = format!("keepalived.instances[{i}]");
        c.name(&format!("{at}.name"), &inst.name);
        let iface_ok = !inst.interface.is_empty()
            && inst.interface.len() <= 15
            && inst
                .interface
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !iface_ok {
            c.fail(
                format!("{at}.interface"),
                format!("{} is not an interface name", shown(&inst.interface)),
            );
        }
        c.range(
            &format!("{at}.virtual_router_id"),
            inst.virtual_router_id as u64,
            1,
            255,
        );
        c.range(&format!("{at}.priority"), inst.priority as u64, 1, 254);
        if inst.nopreempt && inst.state == VrrpState::Master {
            c.fail(
                format!("{at}.nopreempt"),
                "nopreempt with a MASTER state is ignored by keepalived; use state backup",
            );
        }
        match inst.vrrp_version {
            2 => {
                if !inst.advert_int_ms.is_multiple_of(1000)
                    || !(1000..=255_000).contains(&inst.advert_int_ms)
                {
                    c.fail(
                        format!("{at}.advert_int_ms"),
                        format!(
                            "{} ms: VRRPv2 adverts are whole seconds, 1..255 (use vrrp_version 3 for sub-second)",
                            inst.advert_int_ms
                        ),
                    );
                }
            }
            3 => {
                if !inst.advert_int_ms.is_multiple_of(10)
                    || !(10..=40_950).contains(&inst.advert_int_ms)
                {
                    c.fail(
                        format!("{at}.advert_int_ms"),
                        format!(
                            "{} ms: VRRPv3 adverts are 10..40950 ms in steps of 10",
                            inst.advert_int_ms
                        ),
                    );
                }
            }
            v => c.fail(
                format!("{at}.vrrp_version"),
                format!("VRRP version {v}: use 2 or 3"),
            ),
        }
        if inst.addresses.is_empty() {
            c.fail(
                format!("{at}.addresses"),
                "a VRRP instance needs at least one address",
            );
        }
        for (j, a) in inst.addresses.iter().enumerate() {
            let ok = a.split_once('/').is_some_and(|(ip, prefix)| {
                match (ip.parse::<IpAddr>(), prefix.parse::<u8>()) {
                    (Ok(IpAddr::V4(_)), Ok(p)) => p <= 32,
                    (Ok(IpAddr::V6(_)), Ok(p)) => p <= 128,
                    _ => false,
                }
            });
            if !ok {
                c.fail(
                    format!("{at}.addresses[{j}]"),
                    format!("{} is not ADDRESS/PREFIX", shown(a)),
                );
            }
        }
        if let Some(src) = &inst.unicast_src {
            c.ip(&format!("{at}.unicast_src"), src);
        } else if !inst.unicast_peers.is_empty() {
            c.fail(
                format!("{at}.unicast_peers"),
                "unicast peers need unicast_src",
            );
        }
        for (j, p) in inst.unicast_peers.iter().enumerate() {
            c.ip(&format!("{at}.unicast_peers[{j}]"), p);
        }
        for (j, s) in inst.track_scripts.iter().enumerate() {
            if !scripts.contains(s.as_str()) {
                c.fail(
                    format!("{at}.track_scripts[{j}]"),
                    format!("no vrrp script named {}", shown(s)),
                );
            }
        }
        for (j, t) in inst.track_files.iter().enumerate() {
            if !tracks.contains(t.as_str()) {
                c.fail(
                    format!("{at}.track_files[{j}]"),
                    format!("no track file named {}", shown(t)),
                );
            }
        }
        for (field, cmd) in [
            ("notify_master", &inst.notify_master),
            ("notify_backup", &inst.notify_backup),
            ("notify_fault", &inst.notify_fault),
        ] {
            if let Some(cmd) = cmd {
                c.command(&format!("{at}.{field}"), cmd);
            }
        }
        if let Some(r) = inst.garp_master_refresh_s {
            c.range(&format!("{at}.garp_master_refresh_s"), r as u64, 1, 86_400);
        }
    }
}

fn check_files(c: &mut Checker<'_>, plan: &NodePlan) {
    if plan.files.len() > MAX_FILES {
        c.fail("files", format!("more than {MAX_FILES} files"));
        return;
    }
    let mut seen = HashSet::new();
    for (i, f) in plan.files.iter().enumerate() {
        let at = format!("files[{i}]");
        if c.path(&format!("{at}.path"), &f.path) {
            if !ALLOWED_ROOTS.iter().any(|r| f.path.starts_with(r)) {
                c.fail(
                    format!("{at}.path"),
                    format!(
                        "{} is outside the allowed roots {}",
                        shown(&f.path),
                        ALLOWED_ROOTS.join(", ")
                    ),
                );
            } else if FORBIDDEN_PATHS.contains(&f.path.as_str())
                || FORBIDDEN_PREFIXES.iter().any(|p| f.path.starts_with(p))
            {
                c.fail(
                    format!("{at}.path"),
                    format!(
                        "{} may not be written by a plugin (the host renders it, or it holds credentials)",
                        shown(&f.path)
                    ),
                );
            }
        }
        if !seen.insert(f.path.as_str()) {
            c.fail(
                format!("{at}.path"),
                format!("{} is written twice", shown(&f.path)),
            );
        }
        if f.mode > 0o7777 {
            c.fail(
                format!("{at}.mode"),
                format!("{:o} is not a permission mode", f.mode),
            );
        }
        let owner_ok = f.owner.split_once(':').is_some_and(|(u, g)| {
            [u, g].iter().all(|p| {
                !p.is_empty()
                    && p.len() <= 32
                    && (p.as_bytes()[0].is_ascii_lowercase() || p.as_bytes()[0] == b'_')
                    && p.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(&b))
            })
        });
        if !owner_ok {
            c.fail(
                format!("{at}.owner"),
                format!("{} is not \"user:group\"", shown(&f.owner)),
            );
        }
        if f.content.len() > MAX_FILE_BYTES {
            c.fail(format!("{at}.content"), "more than 1 MiB");
        }
        if f.content.contains('\0') {
            c.fail(format!("{at}.content"), "contains a NUL byte");
        }
    }
}

/// Cross-node rules. VRRP instances of one network with one VRID are one
/// virtual router: they must carry the same addresses, or two routers collide.
pub fn check_site(site: &Site, plans: &[NodePlan]) -> Vec<PlanIssue> {
    let mut issues = Vec::new();
    // (network, vrid) -> (node, instance index, sorted addresses)
    let mut routers: HashMap<(u32, u8), (usize, usize, Vec<String>)> = HashMap::new();
    for (n, plan) in plans.iter().enumerate() {
        let Some(k) = &plan.keepalived else { continue };
        let Some(node) = site.nodes.get(n) else {
            continue;
        };
        for (i, inst) in k.instances.iter().enumerate() {
            let mut addrs = inst.addresses.clone();
            addrs.sort();
            let key = (node.network, inst.virtual_router_id);
            match routers.get(&key) {
                None => {
                    routers.insert(key, (n, i, addrs));
                }
                Some((other, oi, other_addrs)) if *other_addrs != addrs => {
                    issues.push(PlanIssue {
                        node: node.name.clone(),
                        field: format!("keepalived.instances[{i}].virtual_router_id"),
                        message: format!(
                            "VRID collision: VRID {} on network {} carries {:?} here but {:?} on node {} (instance {}); give each VIP its own vrid",
                            inst.virtual_router_id,
                            site.networks.get(node.network as usize).map(|x| x.name.as_str()).unwrap_or("?"),
                            addrs,
                            other_addrs,
                            site.nodes[*other].name,
                            plans[*other].keepalived.as_ref().map(|k| k.instances[*oi].name.as_str()).unwrap_or("?"),
                        ),
                    });
                }
                Some(_) => {}
            }
        }
    }
    issues
}
