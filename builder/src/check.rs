//! The plan checker: everything a plugin returns is checked here before any
//! renderer sees it. Plugins are untrusted, so this is the wall between a
//! plugin's strings and a configuration file: names, addresses, ports and
//! ranges, modes, option keywords, script commands, paths and sizes are
//! checked against narrow grammars, and no string that reaches a config file
//! may carry a control character, line break, quote, brace or comment marker.
//!
//! Beyond syntax, the checker refuses what the validators would refuse (the
//! rules were found by running `haproxy -c -dW` and `keepalived -t` on the
//! rendered output): an `option` in a section that ignores it, an HTTP-only
//! option in TCP mode, a health check with no port to check, a VRRP instance
//! mixing address families, a VRID used twice on one interface.
//!
//! Files go only where haseed manages files on a node ([`NODE_PATHS`], an
//! allow-list with a reason per entry), with modes of at most [`MODE_MAX`], and
//! never two at one path or one below another.
//!
//! Pure and near-linear: `check_node` is O(size of the plan) (plus a sort of
//! the frontends and one of the file paths), `check_site` O(total VRRP
//! instances) with hash maps.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;

use crate::contract::{
    Backend, Frontend, HaproxyConfig, KeepalivedConfig, NodePlan, ProxyMode, Site, VrrpInstance,
    VrrpState,
};

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

/// Which proxies an `option` keyword means something in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cap {
    Frontend,
    Backend,
    Both,
}

/// haproxy `option` keywords a plan may use (`httpchk` comes from
/// `http-check`), with the proxies haproxy 2.6 accepts them in without a
/// warning (`haproxy -c -dW`), and whether they need `mode http`.
const HAPROXY_OPTIONS: &[(&str, Cap, bool)] = &[
    ("tcplog", Cap::Frontend, false),
    ("httplog", Cap::Frontend, true),
    ("dontlognull", Cap::Frontend, false),
    ("clitcpka", Cap::Frontend, false),
    ("redispatch", Cap::Backend, false),
    // Redispatch on every retry instead of the last (haproxy 2.6
    // configuration.txt, `option redispatch <interval>`).
    ("redispatch 1", Cap::Backend, false),
    ("tcp-check", Cap::Backend, false),
    ("log-health-checks", Cap::Backend, false),
    ("abortonclose", Cap::Backend, false),
    ("allbackups", Cap::Backend, false),
    ("srvtcpka", Cap::Backend, false),
    ("tcpka", Cap::Both, false),
    ("forwardfor", Cap::Both, true),
    ("http-server-close", Cap::Both, false),
    ("http-keep-alive", Cap::Both, false),
    ("splice-auto", Cap::Both, false),
];

/// One kind of file a plugin may put on a node (`NodePlan.files`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodePath {
    /// A literal path; or a directory and a name with one `*` in it (one or more name
    /// characters, never a '/'); or a directory ending in `/**` (any file at any depth below).
    pub pattern: &'static str,
    /// Whether the file may have execute bits (scripts); configuration files may not (systemd
    /// warns about an executable unit file, and a config file has no reason to run).
    pub exec: bool,
    /// Why haseed writes there: which policy decision or example plugin needs it.
    pub why: &'static str,
}

/// Where plugins may write files on a node: an allow-list of what haseed manages, found by
/// building every example (`examples/*/site.toml` with the default policy and the example
/// plugins, then listing `DIR/NODE/files/`). Everything else is refused, so a plugin cannot
/// write credentials or login configuration (`/etc/shadow`, `/etc/sudoers.d`, `/etc/ssh`,
/// `/etc/pam.d`), code the system loads or schedules (`/etc/ld.so.preload`, `/etc/cron.d`,
/// `/etc/profile.d`), units of other services (a getty autologin drop-in), cloud-init's own
/// configuration (`/etc/cloud`), or shadow a system command: the `PATH` directories take only
/// `haseed-*` names. The same table is in the README ("Security: what a plugin can and cannot
/// do"); keep both in step.
pub const NODE_PATHS: &[NodePath] = &[
    NodePath {
        pattern: "/etc/haseed/**",
        exec: false,
        why: "haseed's own settings, read by its scripts and units (aws-vip.conf, hosts)",
    },
    NodePath {
        pattern: "/etc/default/haseed",
        exec: false,
        why: "environment of haseed's own units",
    },
    NodePath {
        pattern: "/etc/default/haseed-*",
        exec: false,
        why: "environment of haseed's own units",
    },
    NodePath {
        pattern: "/var/lib/haseed/**",
        exec: false,
        why: "haseed's state on the node (keepalived track files)",
    },
    NodePath {
        pattern: "/usr/local/lib/haseed/**",
        exec: true,
        why: "helpers of haseed's scripts",
    },
    NodePath {
        pattern: "/usr/local/sbin/haseed-*",
        exec: true,
        why: "haseed's scripts (haseed-hosts, haseed-aws-vip, haseed-galera-*); haseed-* names only, so no system command is shadowed",
    },
    NodePath {
        pattern: "/usr/local/bin/haseed-*",
        exec: true,
        why: "haseed's commands for users; haseed-* names only, as above",
    },
    NodePath {
        pattern: "/etc/systemd/system/haseed-*.service",
        exec: false,
        why: "haseed's own units (haseed-hosts, haseed-swapoff, haseed-galera-*)",
    },
    NodePath {
        pattern: "/etc/systemd/system/haseed-*.socket",
        exec: false,
        why: "haseed's own socket units (haseed-galera-health)",
    },
    NodePath {
        pattern: "/etc/systemd/system/haseed-*.timer",
        exec: false,
        why: "haseed's own timer units",
    },
    NodePath {
        pattern: "/etc/systemd/system/haproxy.service.d/*.conf",
        exec: false,
        why: "drop-ins for haproxy, which haseed configures (failover hooks)",
    },
    NodePath {
        pattern: "/etc/systemd/system/keepalived.service.d/*.conf",
        exec: false,
        why: "drop-ins for keepalived, which haseed configures (failover hooks)",
    },
    NodePath {
        pattern: "/etc/systemd/system/mariadb.service.d/*.conf",
        exec: false,
        why: "drop-ins for MariaDB on db nodes (Galera start-up)",
    },
    NodePath {
        pattern: "/etc/systemd/timesyncd.conf.d/*.conf",
        exec: false,
        why: "the inventory's NTP servers",
    },
    NodePath {
        pattern: "/etc/sysctl.d/*.conf",
        exec: false,
        why: "kernel settings of a role (Kubernetes bridge netfilter); not 90-haseed.conf, which the host renders",
    },
    NodePath {
        pattern: "/etc/modules-load.d/*.conf",
        exec: false,
        why: "kernel modules of a role (br_netfilter, overlay for Kubernetes)",
    },
    NodePath {
        pattern: "/etc/kubeadm/*",
        exec: false,
        why: "the kubeadm configuration of master nodes",
    },
    NodePath {
        pattern: "/etc/containerd/config.toml",
        exec: false,
        why: "the container runtime of master nodes",
    },
    NodePath {
        pattern: "/etc/mysql/mariadb.conf.d/*.cnf",
        exec: false,
        why: "Galera settings of db nodes",
    },
    NodePath {
        pattern: "/etc/rsyslog.d/*.conf",
        exec: false,
        why: "haproxy's log (example plugin nodeport)",
    },
    NodePath {
        pattern: "/etc/logrotate.d/*",
        exec: false,
        why: "rotation of haproxy's log (example plugin nodeport)",
    },
];

/// Files the host renders from the plan's typed fields (haproxy, keepalived, sysctls); a
/// plugin decides them through those fields, never as text.
const HOST_RENDERED: &[&str] = &[
    "/etc/haproxy/haproxy.cfg",
    "/etc/keepalived/keepalived.conf",
    "/etc/sysctl.d/90-haseed.conf",
];

/// The permission bits a plan file may have: at most rwxrwxr-x. No setuid or setgid (the file
/// would run with its owner's or group's rights for whoever starts it), no sticky bit (it means
/// nothing on a file), no write for others (any user of the node could rewrite it). Execute bits
/// only where [`NodePath::exec`] says so.
pub const MODE_MAX: u32 = 0o775;

/// Whether `path` (already a clean absolute path) matches `pattern` (see [`NodePath`]).
fn path_matches(pattern: &str, path: &str) -> bool {
    if let Some(dir) = pattern.strip_suffix("**") {
        return path.len() > dir.len() && path.starts_with(dir);
    }
    match pattern.split_once('*') {
        None => path == pattern,
        Some((head, tail)) => {
            path.len() > head.len() + tail.len()
                && path.starts_with(head)
                && path.ends_with(tail)
                && !path[head.len()..path.len() - tail.len()].contains('/')
        }
    }
}

/// The allow-list entry a plan file's path falls under.
pub fn node_path(path: &str) -> Option<&'static NodePath> {
    if HOST_RENDERED.contains(&path) {
        return None;
    }
    NODE_PATHS.iter().find(|p| path_matches(p.pattern, path))
}

const TRACK_FILE_ROOTS: &[&str] = &["/run/haseed/", "/var/run/haseed/", "/var/lib/haseed/"];

/// systemd unit types; a service name ending in one of them must be one we
/// enable (`.service`, `.timer`, `.socket`).
const UNIT_TYPES: &[&str] = &[
    "service",
    "socket",
    "timer",
    "device",
    "mount",
    "automount",
    "swap",
    "target",
    "path",
    "slice",
    "scope",
];
const ENABLED_UNIT_TYPES: &[&str] = &["service", "socket", "timer"];

const MAX_FILE_BYTES: usize = 1 << 20;
const MAX_FILES: usize = 256;
const MAX_SERVERS: usize = 10_000;
const MAX_PROXIES: usize = 1_000;
const MAX_INSTANCES: usize = 255;
/// Packages, services, sysctls, kernel words, warnings, scripts, track files.
const MAX_LIST: usize = 1_000;
/// Virtual addresses and unicast peers of one VRRP instance.
const MAX_ADDRESSES: usize = 255;
const MAX_WARNING_CHARS: usize = 1_000;
/// A node's issues beyond this many are dropped (the first ones say enough).
const MAX_ISSUES: usize = 100;
const DAY_MS: u64 = 86_400_000;

struct Checker<'a> {
    node: &'a str,
    issues: Vec<PlanIssue>,
}

impl Checker<'_> {
    fn fail(&mut self, field: impl Into<String>, message: impl Into<String>) {
        if self.issues.len() < MAX_ISSUES {
            self.issues.push(PlanIssue {
                node: self.node.to_string(),
                field: field.into(),
                message: message.into(),
            });
        }
    }

    fn full(&self) -> bool {
        self.issues.len() >= MAX_ISSUES
    }

    /// `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`: proxy, server, script, track file
    /// and instance names, router id, script user.
    fn name(&mut self, field: &str, value: &str) {
        if !is_name(value, 64) {
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

    fn range(&mut self, field: &str, value: i64, lo: i64, hi: i64) {
        if value < lo || value > hi {
            self.fail(field, format!("{value} is out of range {lo}..={hi}"));
        }
    }

    fn at_most(&mut self, field: &str, len: usize, max: usize) -> bool {
        if len > max {
            self.fail(field, format!("{len} entries; at most {max} are allowed"));
            return false;
        }
        true
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

    /// Each entry of a list of references at most once.
    fn listed_once(&mut self, field: &str, names: &[String]) {
        let mut seen = HashSet::new();
        for (i, name) in names.iter().enumerate() {
            if !seen.insert(name.as_str()) {
                self.fail(
                    format!("{field}[{i}]"),
                    format!("{} is listed twice", shown(name)),
                );
            }
        }
    }

    /// `option` lines of one section: known keywords, each once, meaningful
    /// in this section and mode.
    fn options(&mut self, field: &str, options: &[String], section: Option<Cap>, mode: ProxyMode) {
        if !self.at_most(field, options.len(), HAPROXY_OPTIONS.len()) {
            return;
        }
        let mut seen = HashSet::new();
        for (i, o) in options.iter().enumerate() {
            let at = format!("{field}[{i}]");
            let Some(&(_, cap, http_only)) = HAPROXY_OPTIONS.iter().find(|(k, _, _)| k == o) else {
                let names: Vec<&str> = HAPROXY_OPTIONS.iter().map(|(k, _, _)| *k).collect();
                self.fail(
                    at,
                    format!(
                        "unknown haproxy option {}; allowed: {}",
                        shown(o),
                        names.join(", ")
                    ),
                );
                continue;
            };
            // "redispatch" and "redispatch 1" are one option: the last wins.
            let keyword = o.split(' ').next().unwrap_or(o);
            if !seen.insert(keyword) {
                self.fail(
                    at,
                    format!("option {keyword} is listed twice (haproxy warns)"),
                );
                continue;
            }
            match (section, cap) {
                (Some(Cap::Frontend), Cap::Backend) => self.fail(
                    at.clone(),
                    format!("option {o} is a backend option; haproxy ignores it in a frontend (and warns)"),
                ),
                (Some(Cap::Backend), Cap::Frontend) => self.fail(
                    at.clone(),
                    format!("option {o} is a frontend option; haproxy ignores it in a backend (and warns)"),
                ),
                _ => {}
            }
            if http_only && mode != ProxyMode::Http {
                self.fail(
                    at,
                    format!(
                        "option {o} needs mode http (haproxy ignores it in mode tcp and warns)"
                    ),
                );
            }
        }
        if seen.contains("tcplog") && seen.contains("httplog") {
            self.fail(
                field,
                "tcplog and httplog exclude each other (the later one overrides the first; haproxy warns)",
            );
        }
    }

    /// An argv of a keepalived script or notify command. The renderer joins it
    /// with spaces inside one quoted string.
    fn command(&mut self, field: &str, command: &[String]) {
        if command.is_empty() {
            self.fail(field, "empty command");
            return;
        }
        if !self.at_most(field, command.len(), 64) {
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
                        "{} may contain only letters, digits and ._/:=@%+,- (no spaces, quotes, '#', braces or control characters)",
                        shown(arg)
                    ),
                );
            }
        }
    }

    /// An absolute path: `[A-Za-z0-9._/@+-]`, no empty, `.` or `..` segment,
    /// no trailing '/'.
    fn path(&mut self, field: &str, path: &str) -> bool {
        let ok = path.starts_with('/')
            && path.len() <= 255
            && path[1..]
                .split('/')
                .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
            && path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._/@+-".contains(&b));
        if !ok {
            self.fail(
                field,
                format!(
                    "{} is not a clean absolute path (letters, digits and ._/@+-; no '..', '//' or trailing '/')",
                    shown(path)
                ),
            );
        }
        ok
    }
}

/// A value as shown in a message: quoted, escaped, cut short.
fn shown(value: &str) -> String {
    // Escape only the head: a plugin may return a multi-megabyte value.
    let head = match value.char_indices().nth(80) {
        Some((cut, _)) => &value[..cut],
        None => value,
    };
    let mut s = format!("{head:?}");
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

fn is_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// An RFC 1123 host name label.
fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A Debian package name, optionally `=VERSION`.
fn is_package(p: &str) -> bool {
    let (pkg, version) = match p.split_once('=') {
        Some((a, b)) => (a, Some(b)),
        None => (p, None),
    };
    pkg.len() >= 2
        && pkg.len() <= 100
        && (pkg.as_bytes()[0].is_ascii_lowercase() || pkg.as_bytes()[0].is_ascii_digit())
        && pkg
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+.-".contains(&b))
        && version.is_none_or(|v| {
            !v.is_empty()
                && v.len() <= 100
                && v.as_bytes()[0].is_ascii_alphanumeric()
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".+~:-".contains(&b))
        })
}

/// A systemd unit name we may enable: no option-like leading '-', and a
/// unit-type suffix, if any, of service, timer or socket.
fn is_unit(s: &str) -> bool {
    let chars_ok = !s.is_empty()
        && s.len() <= 256
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@._-".contains(&b));
    let suffix_ok = match s.rsplit_once('.') {
        Some((_, t)) if UNIT_TYPES.contains(&t) => ENABLED_UNIT_TYPES.contains(&t),
        _ => true,
    };
    chars_ok && suffix_ok && !s.ends_with('.')
}

/// `net.ipv4.ip_nonlocal_bind` or `net/ipv4/ip_nonlocal_bind`: segments of
/// `[a-z0-9_-]`, at least one '.', no empty segment (so no `..`), no leading
/// '-' or '/' (sysctl would read an option or an absolute path).
fn is_sysctl_key(k: &str) -> bool {
    k.contains('.')
        && k.len() <= 128
        && (k.as_bytes()[0].is_ascii_lowercase() || k.as_bytes()[0].is_ascii_digit())
        && k.split(['.', '/']).all(|seg| {
            !seg.is_empty()
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(&b))
        })
}

fn is_sysctl_value(v: &str) -> bool {
    v.len() <= 256
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b" ._:,/-".contains(&b))
}

/// A URI path for `monitor-uri` and `http-check`: printable ASCII, no space,
/// quote, '#', backslash or brace.
fn is_uri_path(s: &str) -> bool {
    s.starts_with('/')
        && s.len() <= 256
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"\"'#\\{}".contains(&b))
}

/// The methods an HTTP health check may use (haproxy `http-check send meth`).
pub const HTTP_CHECK_METHODS: &[&str] = &["GET", "HEAD", "OPTIONS", "POST"];

/// The one grammar of an HTTP health check, `METHOD /path`: a method of
/// [`HTTP_CHECK_METHODS`], one space, a plain URI path. The plan checker applies it to a
/// backend's `http_check` and the inventory to a service's `check.http`, so a site file is
/// refused at its own line, never later in a plugin's plan. The reason reads after the value:
/// "`GET /a b` must ...".
pub fn http_check(s: &str) -> Result<(), String> {
    if s.bytes().any(|b| !(0x20..0x7f).contains(&b)) {
        return Err("must be printable ASCII (no control characters or line breaks)".into());
    }
    if s.contains(['"', '\'', '#', '\\', '{', '}']) {
        return Err("must not contain quotes, '#', '\\' or braces".into());
    }
    let shape = || {
        format!(
            "must look like \"METHOD /path\" with one space, e.g. \"GET /healthz\" (METHOD: {})",
            HTTP_CHECK_METHODS.join(", ")
        )
    };
    let Some((method, path)) = s.split_once(' ') else {
        return Err(shape());
    };
    if path.contains(' ') || !path.starts_with('/') {
        return Err(shape());
    }
    if !HTTP_CHECK_METHODS.contains(&method) {
        return Err(format!(
            "must use one of the methods {} (\"METHOD /path\"), not {method:?}",
            HTTP_CHECK_METHODS.join(", ")
        ));
    }
    if !is_uri_path(path) {
        return Err("must have a path of at most 256 characters (\"METHOD /path\")".into());
    }
    Ok(())
}

/// "ADDRESS/PREFIX" with a prefix valid for the family.
fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, prefix) = s.split_once('/')?;
    if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ip: IpAddr = ip.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some((ip, prefix))
}

fn family(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
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
                "{} is not a host name (RFC 1123 label: letters, digits, inner '-', up to 63)",
                shown(&plan.hostname)
            ),
        );
    }
    if let Some(h) = &plan.haproxy {
        check_haproxy(&mut c, h);
    }
    if let Some(k) = &plan.keepalived {
        let user = site.nodes.get(node as usize).map(|n| n.user.as_str());
        check_keepalived(&mut c, k, user);
    }
    if c.at_most("packages", plan.packages.len(), MAX_LIST) {
        for (i, p) in plan.packages.iter().enumerate() {
            if !is_package(p) {
                c.fail(
                    format!("packages[{i}]"),
                    format!(
                        "{} is not a Debian package name (optionally =VERSION)",
                        shown(p)
                    ),
                );
            }
        }
    }
    check_apt_sources(&mut c, plan);
    if c.at_most("services", plan.services.len(), MAX_LIST) {
        for (i, s) in plan.services.iter().enumerate() {
            if !is_unit(s) {
                c.fail(
                    format!("services[{i}]"),
                    format!(
                        "{} is not a systemd unit name (letters, digits, @._-; optionally .service, .timer or .socket)",
                        shown(s)
                    ),
                );
            }
        }
    }
    if c.at_most("sysctls", plan.sysctls.len(), MAX_LIST) {
        let mut keys = HashSet::new();
        for (i, s) in plan.sysctls.iter().enumerate() {
            if !is_sysctl_key(&s.key) {
                c.fail(
                    format!("sysctls[{i}].key"),
                    format!(
                        "{} is not a sysctl key (lowercase segments separated by '.' or '/')",
                        shown(&s.key)
                    ),
                );
            } else if !keys.insert(s.key.as_str()) {
                c.fail(
                    format!("sysctls[{i}].key"),
                    format!("{} is set twice", shown(&s.key)),
                );
            }
            if !is_sysctl_value(&s.value) {
                c.fail(
                    format!("sysctls[{i}].value"),
                    format!(
                        "{} is not a plain sysctl value (letters, digits, space and ._:,/-; up to 256)",
                        shown(&s.value)
                    ),
                );
            }
        }
    }
    if c.at_most("kernel_cmdline", plan.kernel_cmdline.len(), MAX_LIST) {
        for (i, w) in plan.kernel_cmdline.iter().enumerate() {
            let ok = !w.is_empty()
                && w.len() <= 256
                && w.bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\'');
            if !ok {
                c.fail(
                    format!("kernel_cmdline[{i}]"),
                    format!(
                        "{} is not one kernel command-line word (printable ASCII, no spaces or quotes)",
                        shown(w)
                    ),
                );
            }
        }
    }
    check_files(&mut c, plan);
    if c.at_most("warnings", plan.warnings.len(), MAX_LIST) {
        for (i, w) in plan.warnings.iter().enumerate() {
            // Bidi controls pass (right-to-left text needs its marks); the terminal gets
            // them escaped (crate::term). Line and paragraph separators break the one line.
            let breaks = |ch: char| ch.is_control() || matches!(ch, '\u{2028}' | '\u{2029}');
            if w.chars().count() > MAX_WARNING_CHARS || w.chars().any(breaks) {
                c.fail(
                    format!("warnings[{i}]"),
                    format!(
                        "a warning must be one line of at most {MAX_WARNING_CHARS} characters with no control characters or line separators"
                    ),
                );
            }
        }
    }
    c.issues
}

fn check_haproxy(c: &mut Checker<'_>, h: &HaproxyConfig) {
    if let Some(m) = h.global.maxconn {
        c.range("haproxy.global.maxconn", m.into(), 1, 10_000_000);
    }
    let d = &h.defaults;
    c.range("haproxy.defaults.retries", d.retries.into(), 0, 100);
    for (field, v) in [
        ("timeout_connect_ms", Some(d.timeout_connect_ms)),
        ("timeout_client_ms", Some(d.timeout_client_ms)),
        ("timeout_server_ms", Some(d.timeout_server_ms)),
        ("timeout_check_ms", d.timeout_check_ms),
    ] {
        if let Some(v) = v {
            c.range(
                &format!("haproxy.defaults.{field}"),
                v.into(),
                1,
                DAY_MS as i64,
            );
        }
    }
    c.options("haproxy.defaults.options", &d.options, None, d.mode);
    if !c.at_most("haproxy.frontends", h.frontends.len(), MAX_PROXIES)
        | !c.at_most("haproxy.backends", h.backends.len(), MAX_PROXIES)
    {
        return;
    }
    // Defaults options are inherited: an HTTP-only one warns in every TCP
    // proxy that inherits it.
    let inherits = |o: &str| d.options.iter().any(|x| x == o);
    let httplog_inherited = inherits("httplog");
    let forwardfor_inherited = inherits("forwardfor");

    c.unique(
        "haproxy.frontends",
        h.frontends.iter().map(|f| f.name.as_str()),
    );
    c.unique(
        "haproxy.backends",
        h.backends.iter().map(|b| b.name.as_str()),
    );
    let backends: HashMap<&str, &Backend> =
        h.backends.iter().map(|b| (b.name.as_str(), b)).collect();
    for (i, f) in h.frontends.iter().enumerate() {
        let at = format!("haproxy.frontends[{i}]");
        c.name(&format!("{at}.name"), &f.name);
        if let Some(addr) = &f.bind_address {
            c.ip(&format!("{at}.bind_address"), addr);
        }
        check_ports(c, &at, f.port_first, f.port_last);
        c.options(
            &format!("{at}.options"),
            &f.options,
            Some(Cap::Frontend),
            f.mode,
        );
        if f.mode == ProxyMode::Tcp && (httplog_inherited || forwardfor_inherited) {
            c.fail(
                format!("{at}.mode"),
                format!(
                    "frontend {} is mode tcp but inherits the HTTP-only option {} from defaults (haproxy warns)",
                    f.name,
                    if httplog_inherited { "httplog" } else { "forwardfor" }
                ),
            );
        }
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
                    format!(
                        "{} is not a plain URI path (starts with '/'; printable ASCII, no spaces, quotes, '#', '\\' or braces)",
                        shown(uri)
                    ),
                );
            }
        }
    }
    check_binds(c, &h.frontends);
    for (i, b) in h.backends.iter().enumerate() {
        if c.full() {
            return;
        }
        let at = format!("haproxy.backends[{i}]");
        c.name(&format!("{at}.name"), &b.name);
        c.options(
            &format!("{at}.options"),
            &b.options,
            Some(Cap::Backend),
            b.mode,
        );
        if b.mode == ProxyMode::Tcp && forwardfor_inherited {
            c.fail(
                format!("{at}.mode"),
                format!(
                    "backend {} is mode tcp but inherits the HTTP-only option forwardfor from defaults (haproxy warns)",
                    b.name
                ),
            );
        }
        if let Some(hc) = &b.http_check {
            if let Err(e) = http_check(hc) {
                c.fail(format!("{at}.http_check"), format!("{} {e}", shown(hc)));
            }
        }
        if !c.at_most(&format!("{at}.servers"), b.servers.len(), MAX_SERVERS) {
            continue;
        }
        c.unique(
            &format!("{at}.servers"),
            b.servers.iter().map(|s| s.name.as_str()),
        );
        for (j, s) in b.servers.iter().enumerate() {
            if c.full() {
                return;
            }
            let sat = format!("{at}.servers[{j}]");
            c.name(&format!("{sat}.name"), &s.name);
            c.ip(&format!("{sat}.address"), &s.address);
            if let Some(p) = s.port {
                c.range(&format!("{sat}.port"), p.into(), 1, 65535);
            }
            if let Some(w) = s.weight {
                c.range(&format!("{sat}.weight"), w.into(), 0, 256);
            }
            if let Some(chk) = &s.check {
                c.range(
                    &format!("{sat}.check.inter_ms"),
                    chk.inter_ms.into(),
                    10,
                    3_600_000,
                );
                c.range(&format!("{sat}.check.rise"), chk.rise.into(), 1, 1000);
                c.range(&format!("{sat}.check.fall"), chk.fall.into(), 1, 1000);
                match (chk.port, s.port) {
                    (Some(p), _) => c.range(&format!("{sat}.check.port"), p.into(), 1, 65535),
                    (None, None) => c.fail(
                        format!("{sat}.check.port"),
                        "a server without a port (port-range frontend) needs a check port: haproxy refuses a server with neither service port nor check port",
                    ),
                    (None, Some(_)) => {}
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

/// What a frontend binds, for overlap checks. `*` is IPv4's any address;
/// `::` takes IPv4 too on Linux (dual stack).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Bind {
    AnyV4,
    AnyAll,
    Addr(IpAddr),
}

impl Bind {
    fn of(f: &Frontend) -> Option<Bind> {
        match &f.bind_address {
            None => Some(Bind::AnyV4),
            Some(a) => match a.parse::<IpAddr>().ok()? {
                ip if ip.is_unspecified() && ip.is_ipv4() => Some(Bind::AnyV4),
                ip if ip.is_unspecified() => Some(Bind::AnyAll),
                ip => Some(Bind::Addr(ip)),
            },
        }
    }

    fn clashes(self, other: Bind) -> bool {
        match (self, other) {
            (Bind::AnyAll, _) | (_, Bind::AnyAll) => true,
            (Bind::AnyV4, Bind::AnyV4) => true,
            (Bind::AnyV4, Bind::Addr(ip)) | (Bind::Addr(ip), Bind::AnyV4) => ip.is_ipv4(),
            (Bind::Addr(a), Bind::Addr(b)) => a == b,
        }
    }
}

/// Two frontends listening on one address and port: haproxy binds both
/// (SO_REUSEPORT) and the kernel splits the connections between them.
fn check_binds(c: &mut Checker<'_>, frontends: &[Frontend]) {
    let mut order: Vec<(u16, u16, usize, Bind)> = frontends
        .iter()
        .enumerate()
        .filter(|(_, f)| f.port_first != 0 && f.port_first <= f.port_last)
        .filter_map(|(i, f)| Some((f.port_first, f.port_last, i, Bind::of(f)?)))
        .collect();
    order.sort_unstable_by_key(|&(first, _, i, _)| (first, i));
    for (k, &(_, last, i, bind)) in order.iter().enumerate() {
        for &(first2, _, j, bind2) in &order[k + 1..] {
            if first2 > last || c.full() {
                break;
            }
            if bind.clashes(bind2) {
                let (a, b) = (i.min(j), i.max(j));
                c.fail(
                    format!("haproxy.frontends[{b}].port_first"),
                    format!(
                        "frontends {} and {} listen on the same address and port (the kernel would split connections between them)",
                        frontends[a].name, frontends[b].name
                    ),
                );
            }
        }
    }
}

/// `node_user`: the login user cloud-init creates on the node (site inventory `user`).
fn check_keepalived(c: &mut Checker<'_>, k: &KeepalivedConfig, node_user: Option<&str>) {
    c.name("keepalived.router_id", &k.router_id);
    c.name("keepalived.script_user", &k.script_user);
    // keepalived drops every script (and the instances tracking them go unchecked) when the
    // user does not exist: only root and the node's own user are known to.
    if k.script_user != "root" && Some(k.script_user.as_str()) != node_user {
        c.fail(
            "keepalived.script_user",
            format!(
                "{} is not a user the node has when keepalived starts; use root or the node's user{}",
                shown(&k.script_user),
                node_user.map(|u| format!(" ({u})")).unwrap_or_default()
            ),
        );
    }
    if !c.at_most("keepalived.scripts", k.scripts.len(), MAX_LIST)
        | !c.at_most("keepalived.track_files", k.track_files.len(), MAX_LIST)
        | !c.at_most("keepalived.instances", k.instances.len(), MAX_INSTANCES)
    {
        return;
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
        c.range(&format!("{at}.interval_s"), s.interval_s.into(), 1, 3600);
        if let Some(t) = s.timeout_s {
            c.range(&format!("{at}.timeout_s"), t.into(), 1, 3600);
        }
        c.range(&format!("{at}.rise"), s.rise.into(), 1, 1000);
        c.range(&format!("{at}.fall"), s.fall.into(), 1, 1000);
        c.range(&format!("{at}.weight"), s.weight.into(), -253, 253);
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
        // keepalived.conf(5): 254 lets a negative value read from the file
        // still reach the fault threshold.
        c.range(&format!("{at}.weight"), t.weight.into(), -254, 254);
        if let Some(v) = t.init_value {
            // keepalived -t: "init value ... is outside sensible range [-254, 254]".
            c.range(&format!("{at}.init_value"), v.into(), -254, 254);
        }
    }
    let scripts: HashSet<&str> = k.scripts.iter().map(|s| s.name.as_str()).collect();
    let tracks: HashSet<&str> = k.track_files.iter().map(|t| t.name.as_str()).collect();
    // (interface, vrid, family) -> instance index: one VRRP router each.
    let mut routers: HashMap<(&str, u8, bool), usize> = HashMap::new();
    for (i, inst) in k.instances.iter().enumerate() {
        if c.full() {
            return;
        }
        let at = format!("keepalived.instances[{i}]");
        let fam = check_instance(c, &at, inst, &scripts, &tracks);
        if let Some(v4) = fam {
            let key = (inst.interface.as_str(), inst.virtual_router_id, v4);
            if let Some(&other) = routers.get(&key) {
                c.fail(
                    format!("{at}.virtual_router_id"),
                    format!(
                        "instances {} and {} both use VRID {} for {} on interface {} (keepalived refuses)",
                        k.instances[other].name,
                        inst.name,
                        inst.virtual_router_id,
                        if v4 { "IPv4" } else { "IPv6" },
                        inst.interface
                    ),
                );
            } else {
                routers.insert(key, i);
            }
        }
    }
}

/// Checks one VRRP instance; returns its address family (true: IPv4) when
/// its addresses agree on one.
fn check_instance(
    c: &mut Checker<'_>,
    at: &str,
    inst: &VrrpInstance,
    scripts: &HashSet<&str>,
    tracks: &HashSet<&str>,
) -> Option<bool> {
    c.name(&format!("{at}.name"), &inst.name);
    let iface_ok = !inst.interface.is_empty()
        && inst.interface.len() <= 15
        && inst.interface != "."
        && inst.interface != ".."
        && inst
            .interface
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !iface_ok {
        c.fail(
            format!("{at}.interface"),
            format!(
                "{} is not an interface name (letters, digits, '.', '_', '-'; up to 15)",
                shown(&inst.interface)
            ),
        );
    } else if inst.interface == "lo" {
        c.fail(
            format!("{at}.interface"),
            "VRRP cannot run on the loopback interface (keepalived ignores the instance)",
        );
    }
    c.range(
        &format!("{at}.virtual_router_id"),
        inst.virtual_router_id.into(),
        1,
        255,
    );
    c.range(&format!("{at}.priority"), inst.priority.into(), 1, 254);
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
                        "{} ms: VRRPv2 adverts are whole seconds, 1..=255 (use vrrp_version 3 for sub-second)",
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
                        "{} ms: VRRPv3 adverts are 10..=40950 ms in steps of 10",
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

    // Addresses: at least one, each ADDRESS/PREFIX, no duplicates, one family.
    let mut fam: Option<IpAddr> = None;
    let mut mixed = false;
    if inst.addresses.is_empty() {
        c.fail(
            format!("{at}.addresses"),
            "a VRRP instance needs at least one address",
        );
    }
    if !c.at_most(
        &format!("{at}.addresses"),
        inst.addresses.len(),
        MAX_ADDRESSES,
    ) | !c.at_most(
        &format!("{at}.unicast_peers"),
        inst.unicast_peers.len(),
        MAX_ADDRESSES,
    ) {
        return None;
    }
    let mut seen = HashSet::new();
    for (j, a) in inst.addresses.iter().enumerate() {
        let field = format!("{at}.addresses[{j}]");
        let Some((ip, _)) = parse_cidr(a) else {
            c.fail(field, format!("{} is not ADDRESS/PREFIX", shown(a)));
            continue;
        };
        if !seen.insert(ip) {
            c.fail(field, format!("address {ip} is listed twice"));
            continue;
        }
        match fam {
            None => fam = Some(ip),
            Some(first) if first.is_ipv4() != ip.is_ipv4() => {
                mixed = true;
                c.fail(
                    field,
                    format!(
                        "{} is {} but {} is {}: one VRRP instance carries one address family (keepalived drops the others)",
                        ip,
                        family(&ip),
                        first,
                        family(&first)
                    ),
                );
            }
            Some(_) => {}
        }
    }
    let same_family = |ip: &IpAddr| fam.is_none_or(|f| f.is_ipv4() == ip.is_ipv4());
    if let Some(src) = &inst.unicast_src {
        if let Some(ip) = c.ip(&format!("{at}.unicast_src"), src) {
            if !same_family(&ip) {
                c.fail(
                    format!("{at}.unicast_src"),
                    format!(
                        "{ip} is {} but the instance's addresses are {}",
                        family(&ip),
                        fam.as_ref().map(family).unwrap_or("?")
                    ),
                );
            }
        }
        if inst.unicast_peers.is_empty() {
            c.fail(
                format!("{at}.unicast_src"),
                "unicast_src needs at least one unicast peer (keepalived falls back to multicast and warns)",
            );
        }
    } else if !inst.unicast_peers.is_empty() {
        c.fail(
            format!("{at}.unicast_peers"),
            "unicast peers need unicast_src",
        );
    }
    for (j, p) in inst.unicast_peers.iter().enumerate() {
        let field = format!("{at}.unicast_peers[{j}]");
        if let Some(ip) = c.ip(&field, p) {
            if !same_family(&ip) {
                c.fail(
                    field,
                    format!(
                        "{ip} is {} but the instance's addresses are {} (keepalived skips the peer)",
                        family(&ip),
                        fam.as_ref().map(family).unwrap_or("?")
                    ),
                );
            }
        }
    }
    if !c.at_most(
        &format!("{at}.track_scripts"),
        inst.track_scripts.len(),
        MAX_LIST,
    ) | !c.at_most(
        &format!("{at}.track_files"),
        inst.track_files.len(),
        MAX_LIST,
    ) {
        return None;
    }
    // keepalived -t refuses a script or file tracked twice by one instance.
    c.listed_once(&format!("{at}.track_scripts"), &inst.track_scripts);
    c.listed_once(&format!("{at}.track_files"), &inst.track_files);
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
        c.range(&format!("{at}.garp_master_refresh_s"), r.into(), 1, 86_400);
    }
    if mixed {
        None
    } else {
        fam.map(|f| f.is_ipv4())
    }
}

/// One APT source line: `deb` or `deb-src`, an optional `[...]` option block
/// whose options are `key=value` words, an http(s) URL, a suite and optional
/// components; printable ASCII without quotes or `#`, so it cannot break the
/// YAML or comment itself out.
fn is_apt_source_line(line: &str) -> bool {
    if line.len() > 512
        || !line
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"\"'#\\`".contains(&b) || b == b' ')
    {
        return false;
    }
    let mut words = line.split(' ');
    if !matches!(words.next(), Some("deb" | "deb-src")) {
        return false;
    }
    let mut rest: Vec<&str> = words.collect();
    if rest.first().is_some_and(|w| w.starts_with('[')) {
        let Some(end) = rest.iter().position(|w| w.ends_with(']')) else {
            return false;
        };
        let options = rest[..=end].join(" ");
        let options = &options[1..options.len() - 1];
        if options.is_empty()
            || !options.split(' ').all(|o| {
                o.split_once('=')
                    .is_some_and(|(k, v)| !k.is_empty() && !v.is_empty())
            })
        {
            return false;
        }
        rest.drain(..=end);
    }
    let [url, suite, ..] = rest.as_slice() else {
        return false;
    };
    (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() > 8
        && !suite.is_empty()
        && rest
            .iter()
            .all(|w| !w.is_empty() && !w.contains(['[', ']']))
}

/// An ASCII-armored OpenPGP public key: the BEGIN/END lines around armor text.
fn is_armored_key(key: &str) -> bool {
    const BEGIN: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";
    const END: &str = "-----END PGP PUBLIC KEY BLOCK-----";
    let body = key.trim_end_matches('\n');
    key.len() <= 64 * 1024
        && body.starts_with(BEGIN)
        && body.ends_with(END)
        && body.len() > BEGIN.len() + END.len()
        && body
            .lines()
            .all(|l| l.len() <= 128 && l.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
}

fn check_apt_sources(c: &mut Checker<'_>, plan: &NodePlan) {
    if !c.at_most("apt_sources", plan.apt_sources.len(), 16) {
        return;
    }
    let mut names = HashSet::new();
    for (i, a) in plan.apt_sources.iter().enumerate() {
        let at = format!("apt_sources[{i}]");
        let name_ok = !a.name.is_empty()
            && a.name.len() <= 64
            && a.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            && !a.name.starts_with('.');
        if !name_ok {
            c.fail(
                format!("{at}.name"),
                format!(
                    "{} is not an APT source name (letters, digits, '.', '_', '-'; up to 64)",
                    shown(&a.name)
                ),
            );
        } else if !names.insert(a.name.as_str()) {
            c.fail(
                format!("{at}.name"),
                format!("{} is listed twice", shown(&a.name)),
            );
        }
        if !is_apt_source_line(&a.source) {
            c.fail(
                format!("{at}.source"),
                format!(
                    "{} is not one APT source line (\"deb [OPTION=VALUE ...] http(s)://URL SUITE [COMPONENT ...]\", no quotes or '#')",
                    shown(&a.source)
                ),
            );
        }
        match &a.key {
            Some(key) if !is_armored_key(key) => c.fail(
                format!("{at}.key"),
                "is not an ASCII-armored PGP public key block (-----BEGIN PGP PUBLIC KEY BLOCK----- ... -----END PGP PUBLIC KEY BLOCK-----, up to 64 KiB)".to_string(),
            ),
            None if a.source.contains("$KEY_FILE") => c.fail(
                format!("{at}.source"),
                "uses $KEY_FILE but the source has no key".to_string(),
            ),
            _ => {}
        }
    }
}

fn check_files(c: &mut Checker<'_>, plan: &NodePlan) {
    if !c.at_most("files", plan.files.len(), MAX_FILES) {
        return;
    }
    // (index, path) of every clean path, for the duplicate and prefix checks below.
    let mut clean: Vec<(usize, &str)> = Vec::with_capacity(plan.files.len());
    for (i, f) in plan.files.iter().enumerate() {
        let at = format!("files[{i}]");
        let mut exec_ok = true;
        if c.path(&format!("{at}.path"), &f.path) {
            clean.push((i, f.path.as_str()));
            if HOST_RENDERED.contains(&f.path.as_str()) {
                c.fail(
                    format!("{at}.path"),
                    format!(
                        "{} may not be written by a plugin: the host renders it from the plan's typed fields (haproxy, keepalived, sysctls)",
                        shown(&f.path)
                    ),
                );
            } else {
                match node_path(&f.path) {
                    Some(p) => exec_ok = p.exec,
                    None => {
                        let allowed: Vec<&str> = NODE_PATHS.iter().map(|p| p.pattern).collect();
                        c.fail(
                            format!("{at}.path"),
                            format!(
                                "{} is not a place haseed manages on a node; plugins may write only {} (README, \"Security\")",
                                shown(&f.path),
                                allowed.join(", ")
                            ),
                        );
                    }
                }
            }
        }
        check_mode(c, &at, f.mode, exec_ok);
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
        } else if f.content.contains('\0') {
            c.fail(format!("{at}.content"), "contains a NUL byte");
        }
    }
    check_path_conflicts(c, &mut clean);
}

/// A plan file's mode: see [`MODE_MAX`].
fn check_mode(c: &mut Checker<'_>, at: &str, mode: u32, exec_ok: bool) {
    if mode > 0o7777 {
        c.fail(
            format!("{at}.mode"),
            format!("{mode:o} is not a permission mode (at most 7777 octal)"),
        );
        return;
    }
    let mut wrong = Vec::new();
    for (bit, what) in [
        (
            0o4000,
            "setuid (it would run as its owner for whoever starts it)",
        ),
        (0o2000, "setgid (it would run with its group's rights)"),
        (0o1000, "sticky (it means nothing on a file)"),
        (
            0o0002,
            "world-writable (any user of the node could rewrite it)",
        ),
    ] {
        if mode & bit != 0 {
            wrong.push(what);
        }
    }
    if !wrong.is_empty() {
        c.fail(
            format!("{at}.mode"),
            format!(
                "{mode:04o} is {}; a plan file's mode is at most {MODE_MAX:04o}",
                wrong.join(", ")
            ),
        );
    } else if !exec_ok && mode & 0o111 != 0 {
        let scripts: Vec<&str> = NODE_PATHS
            .iter()
            .filter(|p| p.exec)
            .map(|p| p.pattern)
            .collect();
        c.fail(
            format!("{at}.mode"),
            format!(
                "{mode:04o} makes a configuration file executable; only scripts under {} may be (e.g. 0644, 0640 or 0600 here)",
                scripts.join(", ")
            ),
        );
    }
}

/// Two plan files at one path, or one file below another (`/etc/a` and `/etc/a/b`): the node
/// cannot hold both. Sorted with '/' below every other byte, the paths below a file follow it
/// directly, so one pass with a stack of the files above the current one finds every
/// conflict: O(n log n), each entry named with the one it clashes with.
fn check_path_conflicts(c: &mut Checker<'_>, clean: &mut [(usize, &str)]) {
    fn key(p: &str) -> impl Iterator<Item = u8> + '_ {
        p.bytes().map(|b| if b == b'/' { 0 } else { b })
    }
    let below =
        |q: &str, p: &str| q.len() > p.len() && q.starts_with(p) && q.as_bytes()[p.len()] == b'/';
    clean.sort_by(|a, b| key(a.1).cmp(key(b.1)).then(a.0.cmp(&b.0)));
    let mut above: Vec<(usize, &str)> = Vec::new();
    for &(j, q) in clean.iter() {
        while let Some(&(_, p)) = above.last() {
            if p == q || below(q, p) {
                break;
            }
            above.pop();
        }
        match above.last() {
            Some(&(i, p)) if p == q => {
                c.fail(
                    format!("files[{j}].path"),
                    format!(
                        "{} is written twice (files[{i}] and files[{j}]); merge them into one file",
                        shown(q)
                    ),
                );
                continue;
            }
            Some(&(i, p)) => c.fail(
                format!("files[{j}].path"),
                format!(
                    "{} (files[{j}]) is below {} (files[{i}]), which is a file: the node cannot hold both; rename one",
                    shown(q),
                    shown(p)
                ),
            ),
            None => {}
        }
        above.push((j, q));
    }
}

/// (network, VRID, IPv4?): one VRRP virtual router.
type RouterKey = (u32, u8, bool);
type AddressSet = Vec<(IpAddr, u8)>;

/// An instance's addresses as one comparable set (parsed, so that two
/// spellings of one address compare equal).
fn address_set(inst: &VrrpInstance) -> AddressSet {
    let mut set: Vec<(IpAddr, u8)> = inst
        .addresses
        .iter()
        .filter_map(|a| parse_cidr(a))
        .collect();
    set.sort_unstable();
    set.dedup();
    set
}

fn show_set(set: &[(IpAddr, u8)]) -> String {
    let items: Vec<String> = set.iter().map(|(ip, p)| format!("{ip}/{p}")).collect();
    format!("[{}]", items.join(", "))
}

/// Cross-node rules. VRRP instances of one network with one VRID (and
/// family) are one virtual router: they must carry the same addresses, or two
/// routers collide. And one virtual address belongs to one virtual router.
/// `plans[i]` is the plan of `site.nodes[i]`.
pub fn check_site(site: &Site, plans: &[NodePlan]) -> Vec<PlanIssue> {
    let mut issues = Vec::new();
    // (network, vrid, ipv4) -> (node, instance, address set)
    let mut routers: HashMap<RouterKey, (usize, usize, AddressSet)> = HashMap::new();
    // (network, address) -> (node, instance, vrid)
    let mut owners: HashMap<(u32, IpAddr), (usize, usize, u8)> = HashMap::new();
    let network_name = |n: u32| {
        site.networks
            .get(n as usize)
            .map(|x| x.name.as_str())
            .unwrap_or("?")
    };
    let instance_name = |n: usize, i: usize| {
        plans[n]
            .keepalived
            .as_ref()
            .and_then(|k| k.instances.get(i))
            .map(|x| x.name.as_str())
            .unwrap_or("?")
    };
    for (n, (plan, node)) in plans.iter().zip(&site.nodes).enumerate() {
        let Some(k) = &plan.keepalived else { continue };
        for (i, inst) in k.instances.iter().enumerate() {
            if issues.len() >= MAX_ISSUES {
                return issues;
            }
            let set = address_set(inst);
            let Some(&(first, _)) = set.first() else {
                continue;
            };
            let vrid = inst.virtual_router_id;
            let key = (node.network, vrid, first.is_ipv4());
            match routers.get(&key) {
                None => {
                    routers.insert(key, (n, i, set.clone()));
                }
                Some((other, oi, other_set)) if *other_set != set => {
                    issues.push(PlanIssue {
                        node: node.name.clone(),
                        field: format!("keepalived.instances[{i}].virtual_router_id"),
                        message: format!(
                            "VRID collision: VRID {vrid} on network {} is instance {} with {} on node {} but instance {} with {} on node {}; give each VIP its own vrid",
                            network_name(node.network),
                            inst.name,
                            show_set(&set),
                            node.name,
                            instance_name(*other, *oi),
                            show_set(other_set),
                            site.nodes[*other].name,
                        ),
                    });
                    continue;
                }
                Some(_) => {}
            }
            for &(ip, _) in &set {
                match owners.get(&(node.network, ip)) {
                    None => {
                        owners.insert((node.network, ip), (n, i, vrid));
                    }
                    Some(&(other, oi, other_vrid)) if other_vrid != vrid => {
                        issues.push(PlanIssue {
                            node: node.name.clone(),
                            field: format!("keepalived.instances[{i}].addresses"),
                            message: format!(
                                "address {ip} on network {} is carried by VRID {vrid} (instance {} on node {}) and by VRID {other_vrid} (instance {} on node {}); one address belongs to one virtual router",
                                network_name(node.network),
                                inst.name,
                                node.name,
                                instance_name(other, oi),
                                site.nodes[other].name,
                            ),
                        });
                    }
                    Some(_) => {}
                }
            }
        }
    }
    issues
}

/// Advice on plans the checker accepts but that do not behave as written on every keepalived
/// the nodes may run, one line per problem, grouped by node like
/// [`crate::kubernetes::warnings`]. A track file with an init value: keepalived 2.2.8 to 2.3.2
/// write it over the file at every start, not only when the file is missing
/// (`trackers/track_file.c` at v2.2.8; fixed by 3f386640, first in v2.3.3), and Ubuntu
/// 24.04 ships 2.2.8, so a state written before keepalived started (e.g. by haproxy's start
/// hook) is lost at its start; the default policy sets none (a missing file reads as 0).
pub fn advisories(site: &Site, plans: &[NodePlan]) -> Vec<String> {
    crate::kubernetes::grouped_warnings(site, |i| {
        let Some(k) = plans.get(i).and_then(|p| p.keepalived.as_ref()) else {
            return Vec::new();
        };
        k.track_files
            .iter()
            .filter(|t| t.init_value.is_some())
            .map(|t| {
                format!(
                    "track file {} ({}) has an init value: keepalived 2.2.8 to 2.3.2 (Ubuntu 24.04 \
                     ships 2.2.8) write it over the file at every start, so a state written \
                     before keepalived started is lost; leave it out (a missing file reads as 0)",
                    t.name, t.path
                )
            })
            .collect()
    })
}

/// A hand-built reference site and plans, shared with the renderer's tests
/// and the fuzz targets ([`crate::fuzzing`]).
pub(crate) mod fixture {
    use crate::contract::*;

    fn node(name: &str, role: Role, address: &str) -> Node {
        Node {
            name: name.into(),
            roles: vec![role],
            address: address.into(),
            network: 0,
            platform: Platform::Raspios,
            interface: "eth0".into(),
            user: "pi".into(),
        }
    }

    /// Two load balancers and three masters, as in examples/pi-k8s.
    pub(crate) fn site() -> Site {
        Site {
            name: "pi-k8s".into(),
            stage: String::new(),
            networks: vec![Network {
                name: "lan".into(),
                cidr: "192.168.3.0/24".into(),
                gateway: Some("192.168.3.1".into()),
                dns: vec!["192.168.3.1".into()],
                ntp: vec![],
            }],
            vips: vec![Vip {
                name: "k8s-api".into(),
                address: "192.168.3.240".into(),
                network: 0,
                holders: vec![0, 1],
                vrid: 1,
                master: None,
                nopreempt: true,
                aws: None,
            }],
            services: vec![Service {
                name: "kube-apiserver".into(),
                vip: 0,
                port_first: 9000,
                port_last: 9000,
                backend_role: Role::Master,
                backends: vec![2, 3, 4],
                backend_port: Some(6443),
                mode: ProxyMode::Tcp,
                balance: None,
                check: CheckOverride {
                    inter_ms: None,
                    rise: None,
                    fall: None,
                    port: None,
                    http: None,
                },
                bind_vip: false,
            }],
            nodes: vec![
                node("lb1", Role::Lb, "192.168.3.241"),
                node("lb2", Role::Lb, "192.168.3.242"),
                node("master1", Role::Master, "192.168.3.251"),
                node("master2", Role::Master, "192.168.3.252"),
                node("master3", Role::Master, "192.168.3.253"),
            ],
        }
    }

    fn check() -> ServerCheck {
        ServerCheck {
            inter_ms: 3000,
            rise: 30,
            fall: 3,
            port: None,
            ssl: false,
        }
    }

    /// The reference load-balancer plan (what the default policy decides).
    pub(crate) fn lb_plan(site: &Site, node: usize) -> NodePlan {
        let me = &site.nodes[node];
        let servers = [2, 3, 4]
            .iter()
            .map(|&m| Server {
                name: site.nodes[m].name.clone(),
                address: site.nodes[m].address.clone(),
                port: Some(6443),
                check: Some(check()),
                backup: false,
                weight: None,
            })
            .collect();
        NodePlan {
            hostname: me.name.clone(),
            haproxy: Some(HaproxyConfig {
                global: HaproxyGlobal {
                    maxconn: None,
                    stats_socket: true,
                },
                defaults: HaproxyDefaults {
                    mode: ProxyMode::Tcp,
                    retries: 6,
                    timeout_connect_ms: 3000,
                    timeout_client_ms: 3000,
                    timeout_server_ms: 60000,
                    timeout_check_ms: None,
                    options: vec!["tcplog".into(), "dontlognull".into()],
                },
                frontends: vec![Frontend {
                    name: "kube-apiserver".into(),
                    bind_address: None,
                    port_first: 9000,
                    port_last: 9000,
                    mode: ProxyMode::Tcp,
                    backend: "kube-apiserver".into(),
                    options: vec![],
                    monitor_uri: None,
                }],
                backends: vec![Backend {
                    name: "kube-apiserver".into(),
                    mode: ProxyMode::Tcp,
                    balance: Balance::Roundrobin,
                    options: vec!["redispatch".into()],
                    http_check: None,
                    servers,
                }],
            }),
            keepalived: Some(KeepalivedConfig {
                router_id: me.name.clone(),
                script_user: "root".into(),
                scripts: vec![VrrpScript {
                    name: "chk_haproxy".into(),
                    command: vec!["/usr/bin/pgrep".into(), "-x".into(), "haproxy".into()],
                    interval_s: 1,
                    timeout_s: Some(2),
                    rise: 2,
                    fall: 3,
                    weight: 0,
                }],
                track_files: vec![],
                instances: vec![VrrpInstance {
                    name: "VI_k8s-api".into(),
                    state: VrrpState::Backup,
                    interface: "eth0".into(),
                    virtual_router_id: 1,
                    priority: 100,
                    nopreempt: true,
                    advert_int_ms: 1000,
                    vrrp_version: 2,
                    unicast_src: None,
                    unicast_peers: vec![],
                    addresses: vec!["192.168.3.240/24".into()],
                    track_scripts: vec!["chk_haproxy".into()],
                    track_files: vec![],
                    notify_master: None,
                    notify_backup: None,
                    notify_fault: None,
                    garp_master_refresh_s: None,
                }],
            }),
            packages: vec!["haproxy".into(), "keepalived".into()],
            apt_sources: vec![],
            sysctls: vec![],
            kernel_cmdline: vec![],
            files: vec![],
            services: vec!["haproxy".into(), "keepalived".into()],
            warnings: vec![],
        }
    }

    /// An APT source with a (syntactically) armored key.
    pub(crate) fn apt(name: &str, source: &str) -> AptSource {
        AptSource {
            name: name.into(),
            source: source.into(),
            key: Some(
                "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBGMHoXcBEADukGOEQyleViOgtkMVa7hKifP6POCTh+98xNW4TfHK/nBJN2sm\n=Lh8y\n-----END PGP PUBLIC KEY BLOCK-----\n"
                    .into(),
            ),
        }
    }

    /// The reference plan with every optional feature switched on: an HTTP
    /// service with a health check and monitor URI, a NodePort range bound to
    /// the VIP, IPv6 servers, VRRPv3 with sub-second adverts, unicast, track
    /// files, notify commands, sysctls and files.
    pub(crate) fn full_plan(site: &Site, node: usize) -> NodePlan {
        let mut plan = lb_plan(site, node);
        plan.apt_sources.push(apt(
            "kubernetes",
            "deb [signed-by=$KEY_FILE] https://pkgs.k8s.io/core:/stable:/v1.31/deb/ /",
        ));
        let h = plan.haproxy.as_mut().unwrap();
        h.global.maxconn = Some(20000);
        h.defaults.timeout_check_ms = Some(2000);
        h.defaults.options.push("redispatch".into());
        h.frontends.push(Frontend {
            name: "ingress-http".into(),
            bind_address: Some("192.168.3.240".into()),
            port_first: 80,
            port_last: 80,
            mode: ProxyMode::Http,
            backend: "ingress-http".into(),
            options: vec!["httplog".into(), "forwardfor".into()],
            monitor_uri: Some("/haproxy-alive".into()),
        });
        h.backends.push(Backend {
            name: "ingress-http".into(),
            mode: ProxyMode::Http,
            balance: Balance::Leastconn,
            options: vec!["forwardfor".into(), "http-server-close".into()],
            http_check: Some("GET /healthz".into()),
            servers: vec![
                Server {
                    name: "w1".into(),
                    address: "192.168.3.251".into(),
                    port: Some(8080),
                    check: Some(ServerCheck {
                        port: Some(8081),
                        ssl: true,
                        ..check()
                    }),
                    backup: false,
                    weight: Some(10),
                },
                Server {
                    name: "w6".into(),
                    address: "fd00::51".into(),
                    port: Some(8080),
                    check: None,
                    backup: true,
                    weight: None,
                },
            ],
        });
        h.frontends.push(Frontend {
            name: "nodeport".into(),
            bind_address: Some("fd00::240".into()),
            port_first: 30000,
            port_last: 32767,
            mode: ProxyMode::Tcp,
            backend: "nodeport".into(),
            options: vec!["tcplog".into()],
            monitor_uri: None,
        });
        h.backends.push(Backend {
            name: "nodeport".into(),
            mode: ProxyMode::Tcp,
            balance: Balance::Source,
            options: vec!["tcp-check".into()],
            http_check: None,
            servers: vec![
                Server {
                    name: "n1".into(),
                    address: "192.168.3.251".into(),
                    port: None,
                    check: Some(ServerCheck {
                        port: Some(10256),
                        ..check()
                    }),
                    backup: false,
                    weight: Some(0),
                },
                Server {
                    name: "n2".into(),
                    address: "fd00::52".into(),
                    port: None,
                    check: None,
                    backup: false,
                    weight: None,
                },
            ],
        });
        let k = plan.keepalived.as_mut().unwrap();
        k.scripts[0].weight = -20;
        k.track_files.push(VrrpTrackFile {
            name: "maint".into(),
            path: "/run/haseed/maint".into(),
            weight: -50,
            init_value: Some(0),
        });
        k.instances.push(VrrpInstance {
            name: "VI_ingress".into(),
            state: if node == 0 {
                VrrpState::Master
            } else {
                VrrpState::Backup
            },
            interface: "eth0".into(),
            virtual_router_id: 2,
            priority: if node == 0 { 150 } else { 100 },
            nopreempt: false,
            advert_int_ms: 100,
            vrrp_version: 3,
            unicast_src: Some(site.nodes[node].address.clone()),
            unicast_peers: vec![site.nodes[1 - node].address.clone()],
            addresses: vec!["192.168.3.239/24".into(), "192.168.3.238/24".into()],
            track_scripts: vec!["chk_haproxy".into()],
            track_files: vec!["maint".into()],
            notify_master: Some(vec![
                "/usr/bin/logger".into(),
                "-t".into(),
                "haseed".into(),
                "master".into(),
            ]),
            notify_backup: Some(vec!["/usr/bin/logger".into(), "backup".into()]),
            notify_fault: Some(vec!["/usr/bin/logger".into(), "fault".into()]),
            garp_master_refresh_s: Some(60),
        });
        plan.sysctls = vec![
            Sysctl {
                key: "net.ipv4.ip_nonlocal_bind".into(),
                value: "1".into(),
            },
            Sysctl {
                key: "net.ipv4.tcp_rmem".into(),
                value: "4096 87380 6291456".into(),
            },
        ];
        plan.kernel_cmdline = vec!["cgroup_enable=memory".into()];
        plan.files = vec![
            File {
                path: "/usr/local/bin/haseed-maint".into(),
                mode: 0o755,
                owner: "root:root".into(),
                content: "#!/bin/sh\necho \"1\" > /run/haseed/maint\t# on\n".into(),
            },
            File {
                path: "/etc/default/haseed".into(),
                mode: 0o640,
                owner: "root:adm".into(),
                content: "A='x'\n\u{7f}\u{85}\u{2028}\u{feff}é\n".into(),
            },
        ];
        plan.packages.push("curl=7.88.1-10+deb12u5".into());
        plan.services.push("haseed-maint.timer".into());
        plan.warnings
            .push("VIP k8s-api has no master: first one up keeps it".into());
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::{apt, full_plan, lb_plan, site};
    use super::*;
    use crate::contract::*;
    use proptest::prelude::*;

    #[test]
    fn a_track_file_init_value_is_advised_against() {
        let s = site();
        // lb_plan's track files carry no init value; full_plan's "maint" carries 0.
        let plain: Vec<NodePlan> = (0..2).map(|n| lb_plan(&s, n)).collect();
        assert_eq!(advisories(&s, &plain), Vec::<String>::new());
        let with: Vec<NodePlan> = (0..2).map(|n| full_plan(&s, n)).collect();
        let got = advisories(&s, &with);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0]
                .contains("nodes lb1, lb2: track file maint (/run/haseed/maint) has an init value")
                && got[0].contains("keepalived 2.2.8 to 2.3.2"),
            "{got:?}"
        );
    }

    #[test]
    fn reference_and_full_plans_pass() {
        let s = site();
        for n in 0..2 {
            for plan in [lb_plan(&s, n), full_plan(&s, n)] {
                let got = check_node(&s, n as u32, &plan);
                assert!(got.is_empty(), "{got:#?}");
            }
        }
        let plans: Vec<NodePlan> = (0..5)
            .map(|n| {
                if n < 2 {
                    full_plan(&s, n)
                } else {
                    NodePlan::empty(&s.nodes[n].name)
                }
            })
            .collect();
        assert!(check_site(&s, &plans).is_empty());
    }

    #[test]
    fn display_names_node_field_and_message() {
        let i = PlanIssue {
            node: "lb1".into(),
            field: "haproxy.backends[0].servers[1].name".into(),
            message: "bad".into(),
        };
        assert_eq!(
            i.to_string(),
            "node lb1: haproxy.backends[0].servers[1].name: bad"
        );
    }

    type Mutation = fn(&mut NodePlan);

    fn h(p: &mut NodePlan) -> &mut HaproxyConfig {
        p.haproxy.as_mut().unwrap()
    }
    fn k(p: &mut NodePlan) -> &mut KeepalivedConfig {
        p.keepalived.as_mut().unwrap()
    }
    fn i1(p: &mut NodePlan) -> &mut VrrpInstance {
        &mut k(p).instances[1]
    }

    /// Each case breaks one rule of the full plan and names the field and a
    /// piece of the message expected.
    #[rustfmt::skip]
    const CASES: &[(&str, Mutation, &str, &str)] = &[
        // hostname
        ("hostname newline", |p| p.hostname = "lb1\nx".into(), "hostname", "not a host name"),
        ("hostname dash", |p| p.hostname = "-lb1".into(), "hostname", "not a host name"),
        ("hostname long", |p| p.hostname = "a".repeat(64), "hostname", "not a host name"),
        ("hostname dot", |p| p.hostname = "lb1.example".into(), "hostname", "not a host name"),
        // names
        ("server name newline", |p| h(p).backends[0].servers[1].name = "m\nx".into(), "haproxy.backends[0].servers[1].name", "not a valid name"),
        ("frontend name space", |p| h(p).frontends[0].name = "a b".into(), "haproxy.frontends[0].name", "not a valid name"),
        ("backend name leading dot", |p| { h(p).backends[0].name = ".x".into(); h(p).frontends[0].backend = ".x".into() }, "haproxy.backends[0].name", "not a valid name"),
        ("name too long", |p| k(p).scripts[0].name = "a".repeat(65), "keepalived.scripts[0].name", "not a valid name"),
        ("track file name", |p| k(p).track_files[0].name = "a{".into(), "keepalived.track_files[0].name", "not a valid name"),
        ("instance name", |p| i1(p).name = "VI 2".into(), "keepalived.instances[1].name", "not a valid name"),
        ("router id", |p| k(p).router_id = "lb1 #x".into(), "keepalived.router_id", "not a valid name"),
        ("script user", |p| k(p).script_user = "root\"".into(), "keepalived.script_user", "not a valid name"),
        // uniqueness
        ("duplicate frontend", |p| h(p).frontends[1].name = "kube-apiserver".into(), "haproxy.frontends[1].name", "duplicate"),
        ("duplicate backend", |p| h(p).backends[2].name = "ingress-http".into(), "haproxy.backends[2].name", "duplicate"),
        ("duplicate server", |p| h(p).backends[0].servers[2].name = "master1".into(), "haproxy.backends[0].servers[2].name", "duplicate"),
        ("duplicate script", |p| { let s = k(p).scripts[0].clone(); k(p).scripts.push(s) }, "keepalived.scripts[1].name", "duplicate"),
        ("duplicate track file", |p| { let s = k(p).track_files[0].clone(); k(p).track_files.push(s) }, "keepalived.track_files[1].name", "duplicate"),
        ("duplicate instance", |p| i1(p).name = "VI_k8s-api".into(), "keepalived.instances[1].name", "duplicate"),
        // frontend -> backend
        ("missing backend", |p| h(p).frontends[0].backend = "nope".into(), "haproxy.frontends[0].backend", "no backend named"),
        ("mode mismatch", |p| h(p).frontends[0].mode = ProxyMode::Http, "haproxy.frontends[0].mode", "differs"),
        // addresses
        ("bind address", |p| h(p).frontends[1].bind_address = Some("192.168.3.240 ".into()), "haproxy.frontends[1].bind_address", "not an IP"),
        ("server address hostname", |p| h(p).backends[0].servers[0].address = "master1".into(), "haproxy.backends[0].servers[0].address", "not an IP"),
        ("unicast src", |p| i1(p).unicast_src = Some("lb1".into()), "keepalived.instances[1].unicast_src", "not an IP"),
        ("unicast peer", |p| i1(p).unicast_peers[0] = "1.2.3".into(), "keepalived.instances[1].unicast_peers[0]", "not an IP"),
        ("vip without prefix", |p| i1(p).addresses[0] = "192.168.3.239".into(), "keepalived.instances[1].addresses[0]", "ADDRESS/PREFIX"),
        ("vip bad prefix v4", |p| i1(p).addresses[0] = "192.168.3.239/33".into(), "keepalived.instances[1].addresses[0]", "ADDRESS/PREFIX"),
        ("vip bad prefix v6", |p| i1(p).addresses = vec!["fd00::1/129".into()], "keepalived.instances[1].addresses[0]", "ADDRESS/PREFIX"),
        ("vip prefix sign", |p| i1(p).addresses[0] = "192.168.3.239/+24".into(), "keepalived.instances[1].addresses[0]", "ADDRESS/PREFIX"),
        // ports
        ("port zero", |p| h(p).frontends[0].port_first = 0, "haproxy.frontends[0].port_first", "port 0"),
        ("port range reversed", |p| h(p).frontends[2].port_last = 29999, "haproxy.frontends[2].port_last", "ends before"),
        ("server port zero", |p| h(p).backends[0].servers[0].port = Some(0), "haproxy.backends[0].servers[0].port", "out of range"),
        ("check port zero", |p| h(p).backends[1].servers[0].check.as_mut().unwrap().port = Some(0), "haproxy.backends[1].servers[0].check.port", "out of range"),
        ("portless server check", |p| h(p).backends[2].servers[0].check.as_mut().unwrap().port = None, "haproxy.backends[2].servers[0].check.port", "needs a check port"),
        ("bind overlap wildcard", |p| { h(p).frontends[1].bind_address = None; h(p).frontends[1].port_first = 9000; h(p).frontends[1].port_last = 9000 }, "haproxy.frontends[1].port_first", "same address and port"),
        ("bind overlap range", |p| { h(p).frontends[0].bind_address = Some("::".into()); h(p).frontends[0].port_first = 31000; h(p).frontends[0].port_last = 31000 }, "haproxy.frontends[2].port_first", "same address and port"),
        // options
        ("unknown option", |p| h(p).defaults.options.push("httpchk".into()), "haproxy.defaults.options[3]", "unknown haproxy option"),
        ("option injection", |p| { h(p).frontends[0] .options .push("tcplog\n    bind *:22".into()) }, "haproxy.frontends[0].options[0]", "unknown haproxy option"),
        ("option uppercase", |p| h(p).backends[0].options.push("Redispatch".into()), "haproxy.backends[0].options[1]", "unknown haproxy option"),
        ("option twice", |p| h(p).defaults.options.push("tcplog".into()), "haproxy.defaults.options[3]", "listed twice"),
        ("redispatch and redispatch 1", |p| h(p).backends[0].options.push("redispatch 1".into()), "haproxy.backends[0].options[1]", "option redispatch is listed twice"),
        ("redispatch with another interval", |p| h(p).backends[0].options[0] = "redispatch 2".into(), "haproxy.backends[0].options[0]", "unknown haproxy option"),
        ("httplog in tcp frontend", |p| h(p).frontends[0].options.push("httplog".into()), "haproxy.frontends[0].options[0]", "needs mode http"),
        ("httplog in tcp defaults", |p| h(p).defaults.options.push("httplog".into()), "haproxy.defaults.options[3]", "needs mode http"),
        ("tcplog and httplog", |p| h(p).frontends[1].options.push("tcplog".into()), "haproxy.frontends[1].options", "exclude each other"),
        ("forwardfor in tcp backend", |p| h(p).backends[0].options.push("forwardfor".into()), "haproxy.backends[0].options[1]", "needs mode http"),
        ("backend option in frontend", |p| h(p).frontends[0].options.push("redispatch".into()), "haproxy.frontends[0].options[0]", "backend option"),
        ("frontend option in backend", |p| h(p).backends[0].options.push("dontlognull".into()), "haproxy.backends[0].options[1]", "frontend option"),
        ("inherited http option", |p| { h(p).defaults.mode = ProxyMode::Http; h(p).defaults.options = vec!["forwardfor".into()] }, "haproxy.frontends[0].mode", "inherits"),
        ("inherited forwardfor backend", |p| { h(p).defaults.mode = ProxyMode::Http; h(p).defaults.options = vec!["forwardfor".into()] }, "haproxy.backends[0].mode", "inherits"),
        // http-check and monitor-uri
        ("http check method", |p| h(p).backends[1].http_check = Some("DELETE /x".into()), "haproxy.backends[1].http_check", "one of the methods GET, HEAD, OPTIONS, POST"),
        ("http check space", |p| h(p).backends[1].http_check = Some("GET /a b".into()), "haproxy.backends[1].http_check", "METHOD /path"),
        ("http check quote", |p| h(p).backends[1].http_check = Some("GET /\"x".into()), "haproxy.backends[1].http_check", "must not contain quotes"),
        ("http check hash", |p| h(p).backends[1].http_check = Some("GET /#x".into()), "haproxy.backends[1].http_check", "'#'"),
        ("http check brace", |p| h(p).backends[1].http_check = Some("GET /{x}".into()), "haproxy.backends[1].http_check", "braces"),
        ("http check version", |p| h(p).backends[1].http_check = Some("GET /x HTTP/1.1".into()), "haproxy.backends[1].http_check", "METHOD /path"),
        ("http check lowercase", |p| h(p).backends[1].http_check = Some("get /x".into()), "haproxy.backends[1].http_check", "one of the methods"),
        ("http check long path", |p| h(p).backends[1].http_check = Some(format!("GET /{}", "a".repeat(256))), "haproxy.backends[1].http_check", "at most 256"),
        ("http check backslash", |p| h(p).backends[1].http_check = Some("GET /\\x".into()), "haproxy.backends[1].http_check", "'\\'"),
        ("http check no path", |p| h(p).backends[1].http_check = Some("GET".into()), "haproxy.backends[1].http_check", "METHOD /path"),
        ("monitor uri relative", |p| h(p).frontends[1].monitor_uri = Some("alive".into()), "haproxy.frontends[1].monitor_uri", "URI path"),
        ("monitor uri newline", |p| h(p).frontends[1].monitor_uri = Some("/a\nb".into()), "haproxy.frontends[1].monitor_uri", "URI path"),
        ("monitor uri tcp", |p| h(p).frontends[0].monitor_uri = Some("/alive".into()), "haproxy.frontends[0].monitor_uri", "needs mode http"),
        // numeric ranges
        ("timeout zero", |p| h(p).defaults.timeout_connect_ms = 0, "haproxy.defaults.timeout_connect_ms", "out of range"),
        ("timeout over a day", |p| h(p).defaults.timeout_server_ms = 86_400_001, "haproxy.defaults.timeout_server_ms", "out of range"),
        ("timeout check zero", |p| h(p).defaults.timeout_check_ms = Some(0), "haproxy.defaults.timeout_check_ms", "out of range"),
        ("retries", |p| h(p).defaults.retries = 101, "haproxy.defaults.retries", "out of range"),
        ("inter low", |p| h(p).backends[0].servers[0].check.as_mut().unwrap().inter_ms = 9, "haproxy.backends[0].servers[0].check.inter_ms", "out of range"),
        ("inter high", |p| h(p).backends[0].servers[0].check.as_mut().unwrap().inter_ms = 3_600_001, "haproxy.backends[0].servers[0].check.inter_ms", "out of range"),
        ("rise zero", |p| h(p).backends[0].servers[0].check.as_mut().unwrap().rise = 0, "haproxy.backends[0].servers[0].check.rise", "out of range"),
        ("fall high", |p| h(p).backends[0].servers[0].check.as_mut().unwrap().fall = 1001, "haproxy.backends[0].servers[0].check.fall", "out of range"),
        ("maxconn zero", |p| h(p).global.maxconn = Some(0), "haproxy.global.maxconn", "out of range"),
        ("maxconn high", |p| h(p).global.maxconn = Some(10_000_001), "haproxy.global.maxconn", "out of range"),
        ("weight high", |p| h(p).backends[1].servers[0].weight = Some(257), "haproxy.backends[1].servers[0].weight", "out of range"),
        // keepalived scripts
        ("script empty", |p| k(p).scripts[0].command = vec![], "keepalived.scripts[0].command", "empty command"),
        ("script relative", |p| k(p).scripts[0].command[0] = "pgrep".into(), "keepalived.scripts[0].command[0]", "absolute path"),
        ("script quote", |p| k(p).scripts[0].command[2] = "ha\"proxy".into(), "keepalived.scripts[0].command[2]", "may contain only"),
        ("script space", |p| k(p).scripts[0].command[2] = "a b".into(), "keepalived.scripts[0].command[2]", "may contain only"),
        ("script hash", |p| k(p).scripts[0].command[2] = "#x".into(), "keepalived.scripts[0].command[2]", "may contain only"),
        ("script brace", |p| k(p).scripts[0].command[2] = "}".into(), "keepalived.scripts[0].command[2]", "may contain only"),
        ("script empty arg", |p| k(p).scripts[0].command[2] = String::new(), "keepalived.scripts[0].command[2]", "may contain only"),
        ("notify newline", |p| i1(p).notify_master.as_mut().unwrap()[1] = "-t\n".into(), "keepalived.instances[1].notify_master[1]", "may contain only"),
        ("notify relative", |p| i1(p).notify_fault = Some(vec!["logger".into()]), "keepalived.instances[1].notify_fault[0]", "absolute path"),
        ("interval zero", |p| k(p).scripts[0].interval_s = 0, "keepalived.scripts[0].interval_s", "out of range"),
        ("interval high", |p| k(p).scripts[0].interval_s = 3601, "keepalived.scripts[0].interval_s", "out of range"),
        ("script timeout zero", |p| k(p).scripts[0].timeout_s = Some(0), "keepalived.scripts[0].timeout_s", "out of range"),
        ("script rise zero", |p| k(p).scripts[0].rise = 0, "keepalived.scripts[0].rise", "out of range"),
        ("script fall high", |p| k(p).scripts[0].fall = 1001, "keepalived.scripts[0].fall", "out of range"),
        ("script weight", |p| k(p).scripts[0].weight = 254, "keepalived.scripts[0].weight", "out of range"),
        ("script weight low", |p| k(p).scripts[0].weight = -254, "keepalived.scripts[0].weight", "out of range"),
        // track files
        ("track file root", |p| k(p).track_files[0].path = "/tmp/maint".into(), "keepalived.track_files[0].path", "track files live under"),
        ("track file dotdot", |p| k(p).track_files[0].path = "/run/haseed/../shadow".into(), "keepalived.track_files[0].path", "clean absolute path"),
        ("track file quote", |p| k(p).track_files[0].path = "/run/haseed/a\"b".into(), "keepalived.track_files[0].path", "clean absolute path"),
        ("track file weight", |p| k(p).track_files[0].weight = 255, "keepalived.track_files[0].weight", "out of range"),
        // found by fuzz/ plan_render (inputs kept in fuzz/corpus/plan_render/)
        ("track file init value", |p| k(p).track_files[0].init_value = Some(255), "keepalived.track_files[0].init_value", "out of range"),
        ("track file init value low", |p| k(p).track_files[0].init_value = Some(-255), "keepalived.track_files[0].init_value", "out of range"),
        ("script user unknown", |p| k(p).script_user = "lb2".into(), "keepalived.script_user", "use root or the node's user (pi)"),
        ("track script twice", |p| i1(p).track_scripts.push("chk_haproxy".into()), "keepalived.instances[1].track_scripts[1]", "listed twice"),
        ("track file twice", |p| i1(p).track_files.push("maint".into()), "keepalived.instances[1].track_files[1]", "listed twice"),
        ("src without peers", |p| i1(p).unicast_peers.clear(), "keepalived.instances[1].unicast_src", "at least one unicast peer"),
        // instances
        ("interface long", |p| i1(p).interface = "a".repeat(16), "keepalived.instances[1].interface", "interface name"),
        ("interface slash", |p| i1(p).interface = "eth0/x".into(), "keepalived.instances[1].interface", "interface name"),
        ("interface dotdot", |p| i1(p).interface = "..".into(), "keepalived.instances[1].interface", "interface name"),
        ("interface loopback", |p| i1(p).interface = "lo".into(), "keepalived.instances[1].interface", "loopback"),
        ("vrid zero", |p| i1(p).virtual_router_id = 0, "keepalived.instances[1].virtual_router_id", "out of range"),
        ("vrid twice on interface", |p| i1(p).virtual_router_id = 1, "keepalived.instances[1].virtual_router_id", "both use VRID 1"),
        ("version 4", |p| i1(p).vrrp_version = 4, "keepalived.instances[1].vrrp_version", "use 2 or 3"),
        ("v2 sub-second", |p| i1(p).vrrp_version = 2, "keepalived.instances[1].advert_int_ms", "whole seconds"),
        ("v2 too long", |p| k(p).instances[0].advert_int_ms = 256_000, "keepalived.instances[0].advert_int_ms", "whole seconds"),
        ("v3 step", |p| i1(p).advert_int_ms = 105, "keepalived.instances[1].advert_int_ms", "steps of 10"),
        ("v3 too long", |p| i1(p).advert_int_ms = 40_960, "keepalived.instances[1].advert_int_ms", "steps of 10"),
        ("priority owner", |p| i1(p).priority = 255, "keepalived.instances[1].priority", "out of range"),
        ("priority zero", |p| i1(p).priority = 0, "keepalived.instances[1].priority", "out of range"),
        ("nopreempt master", |p| { i1(p).state = VrrpState::Master; i1(p).nopreempt = true }, "keepalived.instances[1].nopreempt", "nopreempt with a MASTER state is ignored by keepalived; use state backup"),
        ("unknown track script", |p| i1(p).track_scripts.push("chk_nope".into()), "keepalived.instances[1].track_scripts[1]", "no vrrp script"),
        ("unknown track file", |p| i1(p).track_files.push("nope".into()), "keepalived.instances[1].track_files[1]", "no track file"),
        ("no address", |p| i1(p).addresses.clear(), "keepalived.instances[1].addresses", "at least one address"),
        ("address twice", |p| i1(p).addresses[1] = "192.168.3.239/32".into(), "keepalived.instances[1].addresses[1]", "listed twice"),
        ("mixed families", |p| i1(p).addresses.push("fd00::239/64".into()), "keepalived.instances[1].addresses[2]", "one address family"),
        ("peer family", |p| i1(p).unicast_peers.push("fd00::2".into()), "keepalived.instances[1].unicast_peers[1]", "IPv6"),
        ("src family", |p| i1(p).unicast_src = Some("fd00::1".into()), "keepalived.instances[1].unicast_src", "IPv6"),
        ("peers without src", |p| i1(p).unicast_src = None, "keepalived.instances[1].unicast_peers", "need unicast_src"),
        ("garp refresh zero", |p| i1(p).garp_master_refresh_s = Some(0), "keepalived.instances[1].garp_master_refresh_s", "out of range"),
        // APT sources
        ("apt name slash", |p| p.apt_sources.push(apt("../x", "deb https://a.example/ /")), "apt_sources[1].name", "APT source name"),
        ("apt twice", |p| { p.apt_sources.push(apt("k", "deb https://a.example/ /")); p.apt_sources.push(apt("k", "deb https://a.example/ /")) }, "apt_sources[2].name", "listed twice"),
        ("apt newline", |p| p.apt_sources.push(apt("k", "deb https://a.example/ /\nruncmd: x")), "apt_sources[1].source", "one APT source line"),
        ("apt comment", |p| p.apt_sources.push(apt("k", "deb https://a.example/ / #x")), "apt_sources[1].source", "one APT source line"),
        ("apt not deb", |p| p.apt_sources.push(apt("k", "ppa:foo/bar")), "apt_sources[1].source", "one APT source line"),
        ("apt file url", |p| p.apt_sources.push(apt("k", "deb file:/x /")), "apt_sources[1].source", "one APT source line"),
        ("apt open options", |p| p.apt_sources.push(apt("k", "deb [signed-by=x https://a.example/ /")), "apt_sources[1].source", "one APT source line"),
        ("apt no suite", |p| p.apt_sources.push(apt("k", "deb https://a.example/")), "apt_sources[1].source", "one APT source line"),
        ("apt key file without key", |p| { let mut a = apt("k", "deb [signed-by=$KEY_FILE] https://a.example/ /"); a.key = None; p.apt_sources.push(a) }, "apt_sources[1].source", "has no key"),
        ("apt key not armored", |p| { let mut a = apt("k", "deb https://a.example/ /"); a.key = Some("ssh-ed25519 AAAA".into()); p.apt_sources.push(a) }, "apt_sources[1].key", "ASCII-armored"),
        ("apt too many", |p| p.apt_sources = (0..17).map(|i| apt(&format!("k{i}"), "deb https://a.example/ /")).collect(), "apt_sources", "at most"),
        // packages, services, sysctls, kernel command line
        ("package upper", |p| p.packages.push("HAProxy".into()), "packages[3]", "Debian package"),
        ("package option", |p| p.packages.push("-oDebug=1".into()), "packages[3]", "Debian package"),
        ("package version space", |p| p.packages.push("curl= 1".into()), "packages[3]", "Debian package"),
        ("package one char", |p| p.packages.push("a".into()), "packages[3]", "Debian package"),
        ("service option", |p| p.services.push("--now".into()), "services[3]", "systemd unit"),
        ("service space", |p| p.services.push("a b".into()), "services[3]", "systemd unit"),
        ("service mount", |p| p.services.push("home.mount".into()), "services[3]", "systemd unit"),
        ("sysctl key no dot", |p| p.sysctls[0].key = "kernel".into(), "sysctls[0].key", "sysctl key"),
        ("sysctl key dotdot", |p| p.sysctls[0].key = "net/../../etc".into(), "sysctls[0].key", "sysctl key"),
        ("sysctl key option", |p| p.sysctls[0].key = "-p.x".into(), "sysctls[0].key", "sysctl key"),
        ("sysctl key upper", |p| p.sysctls[0].key = "net.IPv4.x".into(), "sysctls[0].key", "sysctl key"),
        ("sysctl key twice", |p| p.sysctls[1].key = "net.ipv4.ip_nonlocal_bind".into(), "sysctls[1].key", "set twice"),
        ("sysctl value newline", |p| p.sysctls[0].value = "1\nkernel.x = 2".into(), "sysctls[0].value", "plain sysctl value"),
        ("sysctl value long", |p| p.sysctls[0].value = "1".repeat(257), "sysctls[0].value", "plain sysctl value"),
        ("sysctl value equals", |p| p.sysctls[0].value = "1=2".into(), "sysctls[0].value", "plain sysctl value"),
        ("cmdline space", |p| p.kernel_cmdline.push("a b".into()), "kernel_cmdline[1]", "kernel command-line word"),
        ("cmdline quote", |p| p.kernel_cmdline.push("a=\"b\"".into()), "kernel_cmdline[1]", "kernel command-line word"),
        ("cmdline non-ascii", |p| p.kernel_cmdline.push("é".into()), "kernel_cmdline[1]", "kernel command-line word"),
        // files
        ("file relative", |p| p.files[0].path = "etc/x".into(), "files[0].path", "clean absolute path"),
        ("file dotdot", |p| p.files[0].path = "/etc/../root/x".into(), "files[0].path", "clean absolute path"),
        ("file double slash", |p| p.files[0].path = "/etc//x".into(), "files[0].path", "clean absolute path"),
        ("file trailing slash", |p| p.files[0].path = "/etc/x/".into(), "files[0].path", "clean absolute path"),
        ("file space", |p| p.files[0].path = "/etc/a b".into(), "files[0].path", "clean absolute path"),
        ("file root", |p| p.files[0].path = "/root/.ssh/authorized_keys".into(), "files[0].path", "not a place haseed manages"),
        ("file usr lib", |p| p.files[0].path = "/usr/local/lib/other".into(), "files[0].path", "not a place haseed manages"),
        ("file haproxy.cfg", |p| p.files[0].path = "/etc/haproxy/haproxy.cfg".into(), "files[0].path", "the host renders it"),
        ("file keepalived.conf", |p| p.files[0].path = "/etc/keepalived/keepalived.conf".into(), "files[0].path", "the host renders it"),
        ("file sysctl 90-haseed", |p| p.files[0].path = "/etc/sysctl.d/90-haseed.conf".into(), "files[0].path", "the host renders it"),
        ("file shadow", |p| p.files[0].path = "/etc/shadow".into(), "files[0].path", "not a place haseed manages"),
        ("file passwd", |p| p.files[0].path = "/etc/passwd".into(), "files[0].path", "not a place haseed manages"),
        ("file sudoers.d", |p| p.files[0].path = "/etc/sudoers.d/x".into(), "files[0].path", "not a place haseed manages"),
        ("file ssh", |p| p.files[0].path = "/etc/ssh/sshd_config".into(), "files[0].path", "not a place haseed manages"),
        // The review's cases: each got past the old deny-list.
        ("file pam.d", |p| p.files[0].path = "/etc/pam.d/x".into(), "files[0].path", "not a place haseed manages"),
        ("file ld.so.preload", |p| p.files[0].path = "/etc/ld.so.preload".into(), "files[0].path", "not a place haseed manages"),
        ("file cron.d", |p| p.files[0].path = "/etc/cron.d/x".into(), "files[0].path", "not a place haseed manages"),
        ("file getty autologin", |p| p.files[0].path = "/etc/systemd/system/getty@tty1.service.d/autologin.conf".into(), "files[0].path", "not a place haseed manages"),
        ("file ssh as a file", |p| p.files[0].path = "/etc/ssh".into(), "files[0].path", "not a place haseed manages"),
        ("file cloud as a file", |p| p.files[0].path = "/etc/cloud".into(), "files[0].path", "not a place haseed manages"),
        // Near misses of the allow-list.
        ("file sbin not haseed", |p| p.files[0].path = "/usr/local/sbin/iptables".into(), "files[0].path", "not a place haseed manages"),
        ("file bin prefix only", |p| p.files[0].path = "/usr/local/bin/haseed-".into(), "files[0].path", "not a place haseed manages"),
        ("file sbin below", |p| p.files[0].path = "/usr/local/sbin/haseed-x/y".into(), "files[0].path", "not a place haseed manages"),
        ("file other unit", |p| p.files[0].path = "/etc/systemd/system/ssh.service".into(), "files[0].path", "not a place haseed manages"),
        ("file unit in drop-in dir", |p| p.files[0].path = "/etc/systemd/system/haproxy.service.d/x.service".into(), "files[0].path", "not a place haseed manages"),
        ("file haseed dir itself", |p| p.files[0].path = "/etc/haseed".into(), "files[0].path", "not a place haseed manages"),
        ("file sysctl not conf", |p| p.files[0].path = "/etc/sysctl.d/x".into(), "files[0].path", "not a place haseed manages"),
        ("file names the list", |p| p.files[0].path = "/etc/x".into(), "files[0].path", "/etc/haseed/**, /etc/default/haseed,"),
        ("file twice", |p| p.files[1].path = p.files[0].path.clone(), "files[1].path", "written twice (files[0] and files[1])"),
        ("file twice reversed", |p| { p.files[1].path = p.files[0].path.clone(); p.files.swap(0, 1) }, "files[1].path", "written twice (files[0] and files[1])"),
        ("file below a file", |p| { p.files[0].path = "/etc/haseed/a".into(); p.files[1].path = "/etc/haseed/a/b".into() }, "files[1].path", "\"/etc/haseed/a/b\" (files[1]) is below \"/etc/haseed/a\" (files[0]), which is a file"),
        ("file below a file, listed first", |p| { p.files[0].path = "/etc/haseed/a/b/c".into(); p.files[1].path = "/etc/haseed/a".into() }, "files[0].path", "(files[0]) is below \"/etc/haseed/a\" (files[1])"),
        ("file below a file, sibling between", |p| { p.files[0].path = "/etc/haseed/a".into(); p.files[1].path = "/etc/haseed/a/b".into(); p.files.push(File { path: "/etc/haseed/a-b".into(), ..p.files[1].clone() }) }, "files[1].path", "is below \"/etc/haseed/a\" (files[0])"),
        ("file mode too big", |p| p.files[0].mode = 0o10000, "files[0].mode", "permission mode"),
        ("file setuid", |p| p.files[0].mode = 0o4755, "files[0].mode", "setuid"),
        ("file setgid", |p| p.files[0].mode = 0o2755, "files[0].mode", "setgid"),
        ("file sticky", |p| p.files[0].mode = 0o1755, "files[0].mode", "sticky"),
        ("file world-writable", |p| p.files[1].mode = 0o646, "files[1].mode", "world-writable"),
        ("file all special bits", |p| p.files[0].mode = 0o7777, "files[0].mode", "7777 is setuid (it would run as its owner for whoever starts it), setgid (it would run with its group's rights), sticky (it means nothing on a file), world-writable"),
        ("file config executable", |p| p.files[1].mode = 0o750, "files[1].mode", "makes a configuration file executable"),
        ("file unit executable", |p| { p.files[1].path = "/etc/systemd/system/haseed-x.service".into(); p.files[1].mode = 0o744 }, "files[1].mode", "only scripts under /usr/local/lib/haseed/**, /usr/local/sbin/haseed-*, /usr/local/bin/haseed-*"),
        ("file owner no group", |p| p.files[0].owner = "root".into(), "files[0].owner", "user:group"),
        ("file owner upper", |p| p.files[0].owner = "Root:root".into(), "files[0].owner", "user:group"),
        ("file owner injection", |p| p.files[0].owner = "root:root\nx".into(), "files[0].owner", "user:group"),
        ("file nul", |p| p.files[0].content.push('\0'), "files[0].content", "NUL"),
        ("file too big", |p| p.files[0].content = "x".repeat(MAX_FILE_BYTES + 1), "files[0].content", "1 MiB"),
        ("too many files", |p| { let f = p.files[0].clone(); p.files = (0..=MAX_FILES) .map(|i| File { path: format!("/etc/haseed/{i}"), ..f.clone() }) .collect() }, "files", "at most 256"),
        // warnings
        ("warning newline", |p| p.warnings.push("a\nb".into()), "warnings[1]", "one line"),
        ("warning escape", |p| p.warnings.push("a\u{1b}[2J".into()), "warnings[1]", "one line"),
        ("warning line separator", |p| p.warnings.push("a\u{2028}b".into()), "warnings[1]", "one line"),
        ("warning paragraph separator", |p| p.warnings.push("a\u{2029}b".into()), "warnings[1]", "one line"),
        ("warning long", |p| p.warnings.push("é".repeat(1001)), "warnings[1]", "one line"),
        // sizes
        ("too many servers", |p| { let s = h(p).backends[0].servers[0].clone(); h(p).backends[0].servers = (0..=MAX_SERVERS) .map(|i| Server { name: format!("s{i}"), ..s.clone() }) .collect() }, "haproxy.backends[0].servers", "at most 10000"),
        ("too many frontends", |p| { let f = h(p).frontends[0].clone(); h(p).frontends = (0..=MAX_PROXIES) .map(|i| Frontend { name: format!("f{i}"), ..f.clone() }) .collect() }, "haproxy.frontends", "at most 1000"),
        ("too many instances", |p| { let x = i1(p).clone(); k(p).instances = (0..=MAX_INSTANCES) .map(|i| VrrpInstance { name: format!("i{i}"), ..x.clone() }) .collect() }, "keepalived.instances", "at most 255"),
    ];

    #[test]
    fn every_rule_rejects_its_case() {
        let s = site();
        let mut failed = Vec::new();
        for (name, mutate, field, message) in CASES {
            let mut plan = full_plan(&s, 0);
            mutate(&mut plan);
            let got = check_node(&s, 0, &plan);
            if !got
                .iter()
                .any(|i| i.field == *field && i.message.contains(message) && i.node == "lb1")
            {
                failed.push(format!("{name}: want {field}: ..{message}.., got {got:#?}"));
            }
        }
        assert!(failed.is_empty(), "{}", failed.join("\n"));
    }

    #[test]
    fn accepted_edge_values() {
        let s = site();
        let mut plan = full_plan(&s, 0);
        {
            let h = h(&mut plan);
            h.defaults.retries = 0;
            h.defaults.timeout_server_ms = 86_400_000;
            h.backends[0].servers[0].weight = Some(0);
            h.backends[0].servers[1].weight = Some(256);
            h.frontends[0].port_last = 9000;
            h.frontends[2].port_first = 65535;
            h.frontends[2].port_last = 65535;
        }
        {
            let k = k(&mut plan);
            k.scripts[0].weight = -253;
            k.track_files[0].weight = 254;
            k.track_files[0].path = "/var/lib/haseed/maint".into();
            k.instances[0].advert_int_ms = 255_000;
            k.instances[1].advert_int_ms = 40_950;
            k.instances[1].priority = 254;
            k.instances[1].addresses = vec!["192.168.3.239/32".into()];
        }
        plan.hostname = "LB1".into();
        plan.services.push("getty@tty1.service".into());
        plan.services.push("haseed.socket".into());
        plan.services.push("systemd-networkd-wait-online".into());
        plan.sysctls[0].value = String::new();
        plan.sysctls[1].key = "net/ipv4/conf/eth0.100/arp_ignore".into();
        plan.files[0].mode = MODE_MAX;
        plan.files[1].mode = 0o660;
        plan.warnings
            .push("right-to-left \u{202e}text\u{202c} is escaped when printed".into());
        plan.files[0].content = "x".repeat(MAX_FILE_BYTES);
        plan.warnings.push("é".repeat(1000));
        let got = check_node(&s, 0, &plan);
        assert!(got.is_empty(), "{got:#?}");
    }

    #[test]
    fn issues_are_capped() {
        let s = site();
        let mut plan = full_plan(&s, 0);
        plan.packages = (0..500).map(|_| "BAD".to_string()).collect();
        assert_eq!(check_node(&s, 0, &plan).len(), MAX_ISSUES);
    }

    #[test]
    fn unknown_node_index_does_not_panic() {
        let s = site();
        let got = check_node(&s, 99, &NodePlan::empty("-"));
        assert_eq!(got[0].node, "?");
    }

    #[test]
    fn vrid_collision_across_nodes() {
        let s = site();
        let mut plans: Vec<NodePlan> = (0..5)
            .map(|n| {
                if n < 2 {
                    lb_plan(&s, n)
                } else {
                    NodePlan::empty(&s.nodes[n].name)
                }
            })
            .collect();
        // Same addresses in another spelling and order: the same router.
        plans[1].keepalived.as_mut().unwrap().instances[0].addresses =
            vec!["192.168.3.240/24".into(), "192.168.3.240/24".into()];
        assert!(check_site(&s, &plans).is_empty());

        // A master node with its own instance on VRID 1: collision.
        let mut other = lb_plan(&s, 2);
        other.keepalived.as_mut().unwrap().instances[0].name = "VI_other".into();
        other.keepalived.as_mut().unwrap().instances[0].addresses = vec!["192.168.3.230/24".into()];
        plans[2] = other;
        let got = check_site(&s, &plans);
        assert_eq!(got.len(), 1, "{got:#?}");
        assert_eq!(got[0].node, "master1");
        assert_eq!(got[0].field, "keepalived.instances[0].virtual_router_id");
        for want in ["VRID collision", "VI_other", "VI_k8s-api", "lb1", "master1"] {
            assert!(got[0].message.contains(want), "{want}: {}", got[0].message);
        }

        // The same VRID for IPv6 is another router (VRRP for IPv6 is its own protocol).
        plans[2].keepalived.as_mut().unwrap().instances[0].addresses = vec!["fd00::230/64".into()];
        assert!(check_site(&s, &plans).is_empty());
    }

    #[test]
    fn one_address_one_router() {
        let s = site();
        let mut plans: Vec<NodePlan> = (0..2).map(|n| lb_plan(&s, n)).collect();
        plans[1].keepalived.as_mut().unwrap().instances[0].virtual_router_id = 7;
        let got = check_site(&s, &plans);
        assert_eq!(got.len(), 1, "{got:#?}");
        assert_eq!(got[0].node, "lb2");
        assert!(
            got[0].message.contains("192.168.3.240"),
            "{}",
            got[0].message
        );
        assert!(got[0].message.contains("VRID 7"), "{}", got[0].message);
        assert!(got[0].message.contains("VRID 1"), "{}", got[0].message);
    }

    #[test]
    fn check_site_is_linear() {
        // 10,000 nodes, one instance each, distinct VRIDs per network would
        // not fit in u8: use one router shared by all. Must be quick.
        let mut s = site();
        let base = s.nodes[0].clone();
        s.nodes = (0..10_000)
            .map(|i| Node {
                name: format!("n{i}"),
                ..base.clone()
            })
            .collect();
        let plan = lb_plan(&site(), 0);
        let plans = vec![plan; 10_000];
        let t = std::time::Instant::now();
        assert!(check_site(&s, &plans).is_empty());
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
    }

    /// Every file the default policy and the example plugins write (examples/*/site.toml built
    /// with them: DIR/NODE/files/) falls under the allow-list, with its mode.
    #[test]
    fn what_haseed_writes_is_allowed() {
        const WRITTEN: &[(&str, u32)] = &[
            ("/etc/containerd/config.toml", 0o644),
            ("/etc/haseed/aws-vip.conf", 0o644),
            ("/etc/haseed/hosts", 0o644),
            ("/etc/kubeadm/haseed-kubeadm.yaml", 0o600),
            ("/etc/logrotate.d/haproxy", 0o644),
            ("/etc/modules-load.d/k8s.conf", 0o644),
            ("/etc/mysql/mariadb.conf.d/99-haseed-galera.cnf", 0o640),
            ("/etc/rsyslog.d/49-haproxy.conf", 0o644),
            ("/etc/sysctl.d/91-haseed-k8s.conf", 0o644),
            (
                "/etc/systemd/system/haproxy.service.d/50-haseed-failover.conf",
                0o644,
            ),
            ("/etc/systemd/system/haseed-galera-bootstrap.service", 0o644),
            ("/etc/systemd/system/haseed-galera-health.socket", 0o644),
            ("/etc/systemd/system/haseed-galera-health@.service", 0o644),
            ("/etc/systemd/system/haseed-hosts.service", 0o644),
            ("/etc/systemd/system/haseed-swapoff.service", 0o644),
            (
                "/etc/systemd/system/keepalived.service.d/50-haseed-failover.conf",
                0o644,
            ),
            (
                "/etc/systemd/system/mariadb.service.d/haseed-galera.conf",
                0o644,
            ),
            ("/etc/systemd/timesyncd.conf.d/haseed.conf", 0o644),
            ("/usr/local/sbin/haseed-aws-vip", 0o755),
            ("/usr/local/sbin/haseed-galera-bootstrap", 0o755),
            ("/usr/local/sbin/haseed-galera-health", 0o755),
            ("/usr/local/sbin/haseed-hosts", 0o755),
        ];
        let s = site();
        let mut plan = lb_plan(&s, 0);
        let f = |path: &str, mode: u32| File {
            path: path.into(),
            mode,
            owner: "root:root".into(),
            content: String::new(),
        };
        plan.files = WRITTEN.iter().map(|&(p, m)| f(p, m)).collect();
        let got = check_node(&s, 0, &plan);
        assert!(got.is_empty(), "{got:#?}");
        // And every pattern of the table is used by at least one of them or the fixture.
        let fixture = full_plan(&s, 0);
        for p in NODE_PATHS {
            let used = WRITTEN
                .iter()
                .map(|w| w.0)
                .chain(fixture.files.iter().map(|f| f.path.as_str()))
                .any(|w| path_matches(p.pattern, w));
            let reserved = [
                "/usr/local/lib/haseed/**",
                "/usr/local/bin/haseed-*",
                "/etc/default/haseed-*",
                "/var/lib/haseed/**",
                "/etc/systemd/system/haseed-*.timer",
            ];
            assert!(
                used || reserved.contains(&p.pattern),
                "{} is allowed but nothing writes there",
                p.pattern
            );
        }
    }

    #[test]
    fn path_patterns() {
        for (pattern, path, want) in [
            ("/etc/haseed/**", "/etc/haseed/a/b", true),
            ("/etc/haseed/**", "/etc/haseed/", false),
            ("/etc/haseed/**", "/etc/haseed", false),
            ("/etc/haseed/**", "/etc/haseedx/a", false),
            ("/usr/local/sbin/haseed-*", "/usr/local/sbin/haseed-x", true),
            ("/usr/local/sbin/haseed-*", "/usr/local/sbin/haseed-", false),
            (
                "/usr/local/sbin/haseed-*",
                "/usr/local/sbin/haseed-x/y",
                false,
            ),
            (
                "/etc/systemd/system/haseed-*.service",
                "/etc/systemd/system/haseed-a@.service",
                true,
            ),
            (
                "/etc/systemd/system/haseed-*.service",
                "/etc/systemd/system/haseed-.service",
                false,
            ),
            (
                "/etc/systemd/system/haseed-*.service",
                "/etc/systemd/system/haseed-a/b.service",
                false,
            ),
            (
                "/etc/containerd/config.toml",
                "/etc/containerd/config.toml",
                true,
            ),
            (
                "/etc/containerd/config.toml",
                "/etc/containerd/config.tom",
                false,
            ),
        ] {
            assert_eq!(path_matches(pattern, path), want, "{pattern} {path}");
        }
    }

    /// The plan of `full_plan` with its files replaced by `paths` (mode 0644).
    fn plan_with_files(s: &Site, paths: &[String]) -> NodePlan {
        let mut plan = full_plan(s, 0);
        let model = plan.files[1].clone();
        plan.files = paths
            .iter()
            .map(|p| File {
                path: p.clone(),
                mode: 0o644,
                ..model.clone()
            })
            .collect();
        plan
    }

    /// Paths made of segments near the allow-list's edges.
    fn node_paths() -> impl Strategy<Value = String> {
        let segment = prop::sample::select(vec![
            "etc",
            "haseed",
            "haseed-",
            "haseed-x",
            "usr",
            "local",
            "sbin",
            "bin",
            "lib",
            "var",
            "systemd",
            "system",
            "haproxy.service.d",
            "getty@tty1.service.d",
            "x.conf",
            "ssh",
            "pam.d",
            "cron.d",
            "cloud",
            "sudoers.d",
            "shadow",
            "ld.so.preload",
            "sysctl.d",
            "90-haseed.conf",
            "haseed-a.service",
            "haseed-a.timer",
            "default",
            "root",
            ".",
            "..",
            "",
            "a",
            "a b",
            "haproxy",
            "haproxy.cfg",
            "kubeadm",
            "logrotate.d",
            "profile.d",
        ]);
        prop::collection::vec(segment, 1..6).prop_map(|v| format!("/{}", v.join("/")))
    }

    proptest! {
        /// The path policy, whatever the path: an accepted file is a clean path under one
        /// pattern of the table, never a host-rendered file, and never in a place that holds
        /// credentials, login, scheduling or loader configuration.
        #[test]
        fn accepted_paths_are_allowed_and_harmless(path in node_paths()) {
            let s = site();
            let plan = plan_with_files(&s, std::slice::from_ref(&path));
            let issues = check_node(&s, 0, &plan);
            let refused = issues.iter().any(|i| i.field == "files[0].path");
            let clean = path[1..].split('/').all(|seg| !seg.is_empty() && seg != "." && seg != "..")
                && !path.contains(' ');
            let listed = NODE_PATHS.iter().any(|p| path_matches(p.pattern, &path));
            let rendered = HOST_RENDERED.contains(&path.as_str());
            prop_assert_eq!(!refused, clean && listed && !rendered, "{}: {:#?}", path, issues);
            if !refused {
                for bad in ["/etc/ssh", "/etc/pam.d", "/etc/cron.d", "/etc/cloud", "/etc/sudoers", "/etc/shadow", "/etc/ld.so", "/etc/profile.d", "/root", "/etc/systemd/system/getty", "/usr/local/sbin/haseed-/", "/etc/haproxy"] {
                    prop_assert!(!path.starts_with(bad), "{} accepted", path);
                }
            }
        }

        /// Prefix conflicts and duplicates: the sorted pass reports a path exactly when some
        /// other entry equals it or lies above it (checked against all pairs).
        #[test]
        fn path_conflicts_match_all_pairs(paths in prop::collection::vec(
            prop::collection::vec(prop::sample::select(vec!["a", "b", "a-b", "a.b", "ab", "0", "-"]), 1..4)
                .prop_map(|v| format!("/etc/haseed/{}", v.join("/"))), 1..12)) {
            let s = site();
            let plan = plan_with_files(&s, &paths);
            let issues = check_node(&s, 0, &plan);
            for (j, q) in paths.iter().enumerate() {
                let field = format!("files[{j}].path");
                let reported = issues.iter().any(|i| i.field == field);
                let clash = paths.iter().enumerate().any(|(i, p)| {
                    (p == q && i < j) || (q.len() > p.len() && q.starts_with(p.as_str()) && q.as_bytes()[p.len()] == b'/')
                });
                prop_assert_eq!(reported, clash, "{:?}: {:#?}", paths, issues);
            }
        }
    }
}
