//! Stage 2: check the raw structs and resolve names into indices (networks of nodes, holders
//! and VRIDs of VIPs, backends of services). Every independent problem is reported; a value
//! that is already wrong does not cause follow-on errors where that can be avoided.
//!
//! One function per kind of table, in the order the later ones need the earlier ones:
//! `site`, `networks`, `nodes`, `vips` (then `assign_vrids`), `services`, `plugins`.
//!
//! Cost: one pass over each list plus hash lookups; the only sort is per-VIP over its
//! services' port ranges. Network lookup by address is a hash lookup per distinct prefix
//! length (at most 33 + 129).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::net::{self, Cidr, CidrError};
use super::read::{show, AwsMethod, Cx, List, RawCheck, RawFile, RawHostKeys, RawVip, Sp, Span};
use super::{NodeExtra, PluginRef};
use crate::contract::{
    AwsVipMove, CheckOverride, Network, Node, Platform, ProxyMode, Role, Service, Site, Vip,
};

pub(super) struct Resolved {
    pub site: Site,
    pub plugins: Vec<PluginRef>,
    pub default_policy_settings: String,
    pub default_policy_at: super::SettingsAt,
    pub node_extras: Vec<NodeExtra>,
    pub node_spans: Vec<Span>,
    pub vip_max_outage_ms: Vec<Option<u64>>,
}

const DEFAULT_PLATFORM: Platform = Platform::Raspios;
const DEFAULT_INTERFACE: &str = "eth0";
const DEFAULT_USER: &str = "pi";

pub(super) const SSH_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

const NAME_HELP: &str =
    "use 1 to 63 characters: lowercase letters, digits, '.', '_' or '-', starting with a letter or digit";

// ---------------------------------------------------------------------------------------
// Local value checks
// ---------------------------------------------------------------------------------------

/// `[a-z0-9][a-z0-9._-]{0,62}`: site, network, VIP and service names.
pub(super) fn valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(&c))
}

/// An RFC 1123 host name label, lowercase: node names.
pub(super) fn valid_hostname(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

/// A DNS host name (for NTP servers): dot-separated labels, case-insensitive.
fn valid_dns_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
                && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
        })
}

/// `[A-Za-z0-9._-]{1,15}`, not "." or "..".
pub(super) fn valid_interface(s: &str) -> bool {
    (1..=15).contains(&s.len())
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
}

/// `[a-z_][a-z0-9_-]{0,31}`.
pub(super) fn valid_user(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
}

/// One authorized_keys line: `TYPE BASE64 [COMMENT]`.
pub(super) fn check_ssh_key(s: &str) -> Result<(), String> {
    if s.chars()
        .any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}')
    {
        return Err("contains a line break or control character; give one key per entry".into());
    }
    if s.len() > 16 * 1024 {
        return Err("is longer than 16 KiB".into());
    }
    let mut parts = s.split(' ').filter(|p| !p.is_empty());
    let Some(ty) = parts.next() else {
        return Err("is empty".into());
    };
    if !SSH_KEY_TYPES.contains(&ty) {
        return Err(format!(
            "does not start with a known key type ({})",
            SSH_KEY_TYPES.join(", ")
        ));
    }
    match parts.next() {
        None => Err(format!("has no key data after `{ty}`")),
        Some(blob)
            if !blob
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"+/=".contains(&c)) =>
        {
            Err("has key data that is not base64".into())
        }
        Some(_) => Ok(()),
    }
}

const PASSWORD_HASH_HELP: &str =
    "make one with `mkpasswd -m sha-512` or `mkpasswd -m yescrypt` (Debian package whois)";

/// A crypt(3) hash cloud-init can set as is: SHA-512 (`$6$[rounds=N$]SALT$HASH`, 86 hash
/// characters) or yescrypt (`$y$PARAMS$SALT$HASH`, 43 hash characters).
pub(super) fn check_password_hash(s: &str) -> Result<(), String> {
    let crypt64 = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'/')
    };
    let fields: Vec<&str> = s.split('$').collect();
    let ok = match fields.as_slice() {
        ["", "6", rest @ ..] => {
            let rest = match rest {
                [r, tail @ ..] if r.starts_with("rounds=") => {
                    let n = &r["rounds=".len()..];
                    if n.is_empty() || n.len() > 9 || !n.bytes().all(|c| c.is_ascii_digit()) {
                        return Err("has a bad rounds= field".into());
                    }
                    tail
                }
                _ => rest,
            };
            matches!(rest, [salt, hash] if crypt64(salt) && salt.len() <= 16 && crypt64(hash) && hash.len() == 86)
        }
        ["", "y", params, salt, hash] => {
            crypt64(params) && crypt64(salt) && crypt64(hash) && hash.len() == 43
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err("is not a crypt(3) SHA-512 ($6$...) or yescrypt ($y$...) hash".into())
    }
}

/// `FIRST-LAST`.
fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let shape = || {
        format!(
            "port_range {} must look like \"FIRST-LAST\", e.g. \"30000-32767\"",
            show(s)
        )
    };
    let (a, b) = s.split_once('-').ok_or_else(shape)?;
    let num = |x: &str| -> Option<u32> {
        if x.is_empty() || x.len() > 5 || !x.bytes().all(|c| c.is_ascii_digit()) {
            None
        } else {
            x.parse().ok()
        }
    };
    let (Some(a), Some(b)) = (num(a), num(b)) else {
        return Err(shape());
    };
    if !(1..=65535).contains(&a) || !(1..=65535).contains(&b) {
        return Err(format!("port_range {}: ports must be 1..=65535", show(s)));
    }
    if a > b {
        return Err(format!(
            "port_range {}: the first port is greater than the last",
            show(s)
        ));
    }
    Ok((a as u16, b as u16))
}

fn ports_text(first: u16, last: u16) -> String {
    if first == last {
        format!("port {first}")
    } else {
        format!("ports {first}-{last}")
    }
}

/// A name for a message: as is when harmless, else quoted and escaped.
fn nm(s: &str) -> Cow<'_, str> {
    if !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
    {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(show(s))
    }
}

/// "a, b, c" (at most 10, then "...").
fn name_list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let mut v: Vec<Cow<str>> = names.take(11).map(nm).collect();
    if v.len() == 11 {
        v[10] = Cow::Borrowed("...");
    }
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

fn role_index(r: Role) -> usize {
    match r {
        Role::Lb => 0,
        Role::Master => 1,
        Role::Worker => 2,
        Role::Controller => 3,
        Role::Db => 4,
    }
}

// ---------------------------------------------------------------------------------------

impl Cx<'_> {
    /// `noun` of `owner`, e.g. "address" of "node lb1".
    fn ip(&mut self, s: &Sp<String>, noun: &str, kind: &str, name: &str) -> Option<IpAddr> {
        match s.v.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.err(
                    s.span.clone(),
                    format!(
                        "{noun} {} of {kind} {name} is not an IP address",
                        show(&s.v)
                    ),
                );
                None
            }
        }
    }

    fn int_in(&mut self, v: &Sp<i64>, what: &str, lo: i64, hi: i64) -> Option<i64> {
        if (lo..=hi).contains(&v.v) {
            return Some(v.v);
        }
        let want = if hi == u32::MAX as i64 && v.v < lo {
            format!("at least {lo}")
        } else {
            format!("{lo}..={hi}")
        };
        self.err(
            v.span.clone(),
            format!("{what} must be {want}, found {}", v.v),
        );
        None
    }

    fn check_host_keys(&mut self, h: &RawHostKeys) {
        if let Some(i) = &h.interface {
            if !valid_interface(&i.v) {
                let d = self
                    .diag(
                        i.span.clone(),
                        format!("invalid interface name {}", show(&i.v)),
                    )
                    .with_help("use 1 to 15 characters: letters, digits, '.', '_' or '-'");
                self.push(d);
            }
        }
        if let Some(u) = &h.user {
            if !valid_user(&u.v) {
                let d = self
                    .diag(u.span.clone(), format!("invalid user name {}", show(&u.v)))
                    .with_help("use up to 32 characters: lowercase letters, digits, '_' or '-', starting with a letter or '_'");
                self.push(d);
            }
        }
        if let Some(keys) = &h.ssh_authorized_keys {
            for k in &keys.v {
                if let Err(e) = check_ssh_key(&k.v) {
                    self.err(k.span.clone(), format!("ssh_authorized_keys entry {e}"));
                }
            }
        }
        if let Some(p) = &h.password_hash {
            if let Err(e) = check_password_hash(&p.v) {
                let d = self
                    .diag(p.span.clone(), format!("password_hash {e}"))
                    .with_help(PASSWORD_HASH_HELP);
                self.push(d);
            }
        }
        if let Some(span) = &h.password {
            // Warn, not refuse (issue 7): the value is ignored, never stored or written out.
            let d = self
                .diag(
                    span.clone(),
                    "plaintext `password` is ignored and never written out; give password_hash instead",
                )
                .with_help(PASSWORD_HASH_HELP);
            self.warnings.push(d);
        }
    }

    /// Reports `name` if invalid or already in `seen`; inserts it otherwise.
    fn unique_name<'n>(
        &mut self,
        seen: &mut HashMap<&'n str, usize>,
        spans: &[Option<Span>],
        name: &'n Sp<String>,
        index: usize,
        kind: &NameKind,
    ) {
        let NameKind { kind, valid, help } = *kind;
        if !valid(&name.v) {
            let d = self
                .diag(
                    name.span.clone(),
                    format!("invalid {kind} name {}", show(&name.v)),
                )
                .with_help(help);
            self.push(d);
        }
        match seen.get(name.v.as_str()) {
            Some(&first) => {
                let mut d = self.diag(
                    name.span.clone(),
                    format!("duplicate {kind} name {}", nm(&name.v)),
                );
                if let Some(Some(s)) = spans.get(first) {
                    d = d.with_label(s.clone(), "first defined here");
                }
                self.push(d);
            }
            None => {
                seen.insert(name.v.as_str(), index);
            }
        }
    }
}

/// What a kind of name is called and which names are valid.
struct NameKind {
    kind: &'static str,
    valid: fn(&str) -> bool,
    help: &'static str,
}

const NETWORK_NAME: NameKind = NameKind {
    kind: "network",
    valid: valid_name,
    help: NAME_HELP,
};
const NODE_NAME: NameKind = NameKind {
    kind: "node",
    valid: valid_hostname,
    help: "node names are host names: 1 to 63 lowercase letters, digits or '-', not starting or ending with '-'",
};
const VIP_NAME: NameKind = NameKind {
    kind: "VIP",
    valid: valid_name,
    help: NAME_HELP,
};
const SERVICE_NAME: NameKind = NameKind {
    kind: "service",
    valid: valid_name,
    help: NAME_HELP,
};

fn name_spans<T>(items: &[T], f: impl Fn(&T) -> Option<&Sp<String>>) -> Vec<Option<Span>> {
    items.iter().map(|x| f(x).map(|n| n.span.clone())).collect()
}

pub(super) fn resolve(cx: &mut Cx<'_>, raw: &RawFile, site_path: &Path) -> Resolved {
    let (name, stage, vrid_base) = site(cx, raw);
    cx.check_host_keys(&raw.defaults);
    let nets = networks(cx, raw);
    let nodes = nodes(cx, raw, &nets);
    let mut vips = vips(cx, raw, &nets, &nodes);
    assign_vrids(cx, raw, &nets, &mut vips, vrid_base);
    let services = services(cx, raw, &nodes, &vips);
    let plugins = plugins(cx, raw, site_path);
    Resolved {
        site: Site {
            name,
            stage,
            networks: nets.list,
            vips: vips.list,
            services,
            nodes: nodes.list,
        },
        plugins,
        default_policy_settings: raw
            .default_policy_json
            .clone()
            .unwrap_or_else(|| "{}".into()),
        default_policy_at: raw.default_policy_at.clone(),
        node_extras: nodes.extras,
        node_spans: nodes.spans,
        vip_max_outage_ms: vips.max_outage_ms,
    }
}

/// `[site]`: its name, its stage and the first VRID of each network (`vrid_base`).
fn site(cx: &mut Cx<'_>, raw: &RawFile) -> (String, String, u8) {
    let mut site_name = String::new();
    if let Some(n) = &raw.site.name {
        if !valid_name(&n.v) {
            let d = cx
                .diag(n.span.clone(), format!("invalid site name {}", show(&n.v)))
                .with_help(NAME_HELP);
            cx.push(d);
        }
        site_name = n.v.clone();
    }
    let mut stage = String::new();
    if let Some(s) = &raw.site.stage {
        if !s.v.is_empty() && !valid_name(&s.v) {
            let d = cx
                .diag(s.span.clone(), format!("invalid stage name {}", show(&s.v)))
                .with_help(NAME_HELP);
            cx.push(d);
        }
        stage = s.v.clone();
    }
    let vrid_base = match &raw.site.vrid_base {
        Some(b) => cx
            .int_in(b, "vrid_base of [site]", 1, 255)
            .map_or(1, |b| b as u8),
        None => derived_vrid_base(&site_name),
    };
    (site_name, stage, vrid_base)
}

/// The first VRID the VIPs of each network get when `[site] vrid_base` is not set: 1 to 255,
/// from the site's name (32-bit FNV-1a, the same on every host and every release).
///
/// VRRP has no default: "Configurable item in the range 1-255 (decimal). There is no default."
/// (RFC 5798 section 5.2.3), and one VRID must not be used by two virtual routers on one LAN:
/// keepalived then takes the other site's adverts for its own peer's (the VIP flaps, or both
/// drop to BACKUP). Starting every site at 1, as haseed did, made any two sites on one LAN
/// collide. A start derived from the name makes a collision between two sites unlikely (1 in
/// 255), not impossible: sites that share a LAN set `vrid_base` (or `vrid` per VIP) by plan.
pub(super) fn derived_vrid_base(site_name: &str) -> u8 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in site_name.as_bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    (1 + h % 255) as u8
}

/// The `[[network]]` table, resolved, and the lookups the later tables need.
struct Networks<'r> {
    list: Vec<Network>,
    by_name: HashMap<&'r str, usize>,
    cidrs: Vec<Option<Cidr>>,
    gateways: Vec<Option<(IpAddr, Span)>>,
    /// (is_v6, prefix, network bits) -> networks with exactly that cidr
    by_cidr: HashMap<(bool, u8, u128), Vec<usize>>,
    /// distinct (family, prefix), longest first
    prefixes: Vec<(bool, u8)>,
}

/// The defined network names, for "unknown network" help.
fn network_names(raw: &RawFile) -> String {
    name_list(
        raw.networks
            .iter()
            .filter_map(|n| n.name.as_ref())
            .map(|n| n.v.as_str()),
    )
}

fn networks<'r>(cx: &mut Cx<'_>, raw: &'r RawFile) -> Networks<'r> {
    let net_name_spans = name_spans(&raw.networks, |n| n.name.as_ref());
    let mut net_by_name: HashMap<&str, usize> = HashMap::new();
    let mut cidrs: Vec<Option<Cidr>> = Vec::with_capacity(raw.networks.len());
    let mut gateways: Vec<Option<(IpAddr, Span)>> = Vec::with_capacity(raw.networks.len());
    let mut networks: Vec<Network> = Vec::with_capacity(raw.networks.len());
    // (is_v6, prefix, network bits) -> networks with exactly that cidr
    let mut by_cidr: HashMap<(bool, u8, u128), Vec<usize>> = HashMap::new();
    for (i, n) in raw.networks.iter().enumerate() {
        if let Some(name) = &n.name {
            cx.unique_name(&mut net_by_name, &net_name_spans, name, i, &NETWORK_NAME);
        }
        let label = n.name.as_ref().map_or(Cow::Borrowed("?"), |s| nm(&s.v));
        let cidr = n.cidr.as_ref().and_then(|c| match Cidr::parse(&c.v) {
            Ok(cidr) => Some(cidr),
            Err(e) => {
                let d = match e {
                    CidrError::Syntax => cx
                        .diag(c.span.clone(), format!("invalid cidr {}", show(&c.v)))
                        .with_help("write ADDRESS/PREFIX, e.g. \"192.168.3.0/24\""),
                    CidrError::Prefix(p) => cx.diag(
                        c.span.clone(),
                        format!(
                            "invalid cidr {}: prefix length /{p} is too long",
                            show(&c.v)
                        ),
                    ),
                    CidrError::HostBits(net) => cx
                        .diag(
                            c.span.clone(),
                            format!("invalid cidr {}: the host bits are not zero", show(&c.v)),
                        )
                        .with_help(format!("did you mean \"{net}\"?")),
                };
                cx.push(d);
                None
            }
        });
        if let Some(c) = cidr {
            by_cidr
                .entry((c.is_v6(), c.prefix(), c.bits()))
                .or_default()
                .push(i);
        }
        let mut gateway = None;
        if let Some(g) = &n.gateway {
            if let Some(ip) = cx.ip(g, "gateway", "network", &label) {
                if let Some(c) = cidr {
                    if !c.contains(ip) {
                        cx.err(
                            g.span.clone(),
                            format!("gateway {ip} is outside network {label} ({c})"),
                        );
                    } else if let Some(what) = c.reserved(ip) {
                        cx.err(
                            g.span.clone(),
                            format!("gateway {ip} is {what} of network {label} ({c})"),
                        );
                    }
                }
                gateway = Some((ip, g.span.clone()));
            }
        }
        let mut dns = Vec::new();
        for d in n.dns.iter().flat_map(|l| l.v.iter()) {
            if let Some(ip) = cx.ip(d, "dns entry", "network", &label) {
                dns.push(ip.to_string());
            }
        }
        let mut ntp = Vec::new();
        for t in n.ntp.iter().flat_map(|l| l.v.iter()) {
            match t.v.parse::<IpAddr>() {
                Ok(ip) => ntp.push(ip.to_string()),
                Err(_) if valid_dns_name(&t.v) => ntp.push(t.v.clone()),
                Err(_) => cx.err(
                    t.span.clone(),
                    format!(
                        "ntp entry {} of network {label} is neither an IP address nor a host name",
                        show(&t.v)
                    ),
                ),
            }
        }
        networks.push(Network {
            name: n.name.as_ref().map(|s| s.v.clone()).unwrap_or_default(),
            cidr: cidr
                .map(|c| c.to_string())
                .or_else(|| n.cidr.as_ref().map(|c| c.v.clone()))
                .unwrap_or_default(),
            gateway: gateway.as_ref().map(|(ip, _)| ip.to_string()),
            dns,
            ntp,
        });
        cidrs.push(cidr);
        gateways.push(gateway);
    }
    // distinct (family, prefix), longest first
    let mut prefixes: Vec<(bool, u8)> = by_cidr.keys().map(|&(v6, p, _)| (v6, p)).collect();
    prefixes.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    prefixes.dedup();

    Networks {
        list: networks,
        by_name: net_by_name,
        cidrs,
        gateways,
        by_cidr,
        prefixes,
    }
}

/// The `[[node]]` table, resolved, and the lookups the later tables need.
struct Nodes<'r> {
    list: Vec<Node>,
    extras: Vec<NodeExtra>,
    spans: Vec<Span>,
    by_name: HashMap<&'r str, usize>,
    by_addr: HashMap<IpAddr, usize>,
    /// Each node's network, where it could be resolved.
    nets: Vec<Option<usize>>,
    /// Nodes per role (by `role_index`), in file order.
    by_role: [Vec<u32>; 5],
    /// Load balancers per network, in file order: a VIP's default holders.
    lb_by_net: HashMap<usize, Vec<u32>>,
    /// Some node's roles or network could not be read: "nobody has role X" may be wrong.
    incomplete: bool,
}

fn nodes<'r>(cx: &mut Cx<'_>, raw: &'r RawFile, nets: &Networks<'r>) -> Nodes<'r> {
    let Networks {
        list: networks,
        by_name: net_by_name,
        cidrs,
        gateways,
        by_cidr,
        prefixes,
    } = nets;
    let net_names = || network_names(raw);
    let node_name_spans = name_spans(&raw.nodes, |n| n.name.as_ref());
    let mut node_by_name: HashMap<&str, usize> = HashMap::with_capacity(raw.nodes.len());
    let mut node_by_addr: HashMap<IpAddr, usize> = HashMap::with_capacity(raw.nodes.len());
    let mut node_nets: Vec<Option<usize>> = Vec::with_capacity(raw.nodes.len());
    let mut by_role: [Vec<u32>; 5] = Default::default();
    let mut lb_by_net: HashMap<usize, Vec<u32>> = HashMap::new();
    // Some node's roles or network could not be read: "nobody has role X" may be wrong.
    let mut nodes_incomplete = false;
    let mut nodes = Vec::with_capacity(raw.nodes.len());
    let mut node_extras = Vec::with_capacity(raw.nodes.len());
    let mut node_spans = Vec::with_capacity(raw.nodes.len());
    // aws nodes on eth0, by the span that decided it: one warning each.
    let mut aws_eth0: BTreeMap<(usize, usize), Vec<String>> = BTreeMap::new();
    let d = &raw.defaults;

    for (i, n) in raw.nodes.iter().enumerate() {
        let idx = i as u32;
        if let Some(name) = &n.name {
            cx.unique_name(&mut node_by_name, &node_name_spans, name, i, &NODE_NAME);
        }
        let label = n.name.as_ref().map_or(Cow::Borrowed("?"), |s| nm(&s.v));
        node_spans.push(n.name.as_ref().map_or(n.span.clone(), |s| s.span.clone()));

        let mut roles = Vec::new();
        match &n.roles {
            Some(list) => {
                if list.v.is_empty() {
                    let d = cx
                        .diag(list.span.clone(), format!("node {label} has no roles"))
                        .with_help("give at least one of: lb, master, worker, controller, db");
                    cx.push(d);
                }
                let mut seen = [false; 5];
                for r in &list.v {
                    let ri = role_index(r.v);
                    if seen[ri] {
                        cx.err(
                            r.span.clone(),
                            format!("role {} is listed twice for node {label}", r.v.as_str()),
                        );
                        continue;
                    }
                    seen[ri] = true;
                    roles.push(r.v);
                    by_role[ri].push(idx);
                }
            }
            None => nodes_incomplete = true,
        }

        let ip = n.address.as_ref().and_then(|a| {
            let ip = cx.ip(a, "address", "node", &label)?;
            if let Some(what) = net::unusable(ip) {
                cx.err(
                    a.span.clone(),
                    format!("address {ip} of node {label} is {what}"),
                );
            }
            match node_by_addr.get(&ip) {
                Some(&first) => {
                    let mut d = cx.diag(
                        a.span.clone(),
                        format!(
                            "duplicate node address {ip}: node {label} and node {}",
                            raw.nodes[first]
                                .name
                                .as_ref()
                                .map_or(Cow::Borrowed("?"), |s| nm(&s.v))
                        ),
                    );
                    if let Some(s) = &raw.nodes[first].address {
                        d = d.with_label(s.span.clone(), "first used here");
                    }
                    cx.push(d);
                }
                None => {
                    node_by_addr.insert(ip, i);
                }
            }
            Some(ip)
        });

        let mut network = None;
        match &n.network {
            Some(nn) => match net_by_name.get(nn.v.as_str()) {
                Some(&ni) => {
                    network = Some(ni);
                    if let (Some(ip), Some(c)) = (ip, cidrs[ni]) {
                        if !c.contains(ip) {
                            let d = cx.diag(
                                n.address
                                    .as_ref()
                                    .map_or(nn.span.clone(), |a| a.span.clone()),
                                format!(
                                    "address {ip} of node {label} is outside its network {} ({c})",
                                    nm(&nn.v)
                                ),
                            );
                            cx.push(d);
                        }
                    }
                }
                None => {
                    let d = cx
                        .diag(nn.span.clone(), format!("unknown network {}", show(&nn.v)))
                        .with_help(format!("defined networks: {}", net_names()));
                    cx.push(d);
                }
            },
            None => {
                if let Some(ip) = ip {
                    let (v6, bits) = net::ip_bits(ip);
                    let found = prefixes
                        .iter()
                        .filter(|&&(pv6, _)| pv6 == v6)
                        .find_map(|&(_, p)| by_cidr.get(&(v6, p, net::mask(v6, bits, p))));
                    // `n.address` is Some whenever `ip` is.
                    let aspan = n
                        .address
                        .as_ref()
                        .map_or(n.span.clone(), |a| a.span.clone());
                    match found.map(|v| v.as_slice()) {
                        Some([ni]) => network = Some(*ni),
                        Some(several) => {
                            let d = cx
                                .diag(
                                    aspan,
                                    format!(
                                        "address {ip} of node {label} is in several networks with the same cidr ({})",
                                        name_list(several.iter().map(|&k| {
                                            raw.networks[k].name.as_ref().map_or("?", |s| s.v.as_str())
                                        }))
                                    ),
                                )
                                .with_help("set network = \"...\" on the node");
                            cx.push(d);
                        }
                        None => {
                            let d = cx
                                .diag(aspan, format!("address {ip} of node {label} is in no [[network]]"))
                                .with_help(
                                    "add a [[network]] whose cidr contains it, or set network = \"...\" on the node",
                                );
                            cx.push(d);
                        }
                    }
                }
            }
        }
        if network.is_none() {
            nodes_incomplete = true;
        }
        if let (Some(ip), Some(ni), Some(a)) = (ip, network, &n.address) {
            if let Some(c) = cidrs[ni] {
                let net_label = nm(&networks[ni].name);
                if let Some(what) = c.reserved(ip) {
                    cx.err(
                        a.span.clone(),
                        format!(
                            "address {ip} of node {label} is {what} of network {net_label} ({c})"
                        ),
                    );
                }
                if let Some((g, gspan)) = &gateways[ni] {
                    if *g == ip {
                        let d = cx
                            .diag(
                                a.span.clone(),
                                format!("address {ip} of node {label} is the gateway of network {net_label}"),
                            )
                            .with_label(gspan.clone(), "gateway set here");
                        cx.push(d);
                    }
                }
            }
        }
        if let Some(ni) = network {
            if roles.contains(&Role::Lb) {
                lb_by_net.entry(ni).or_default().push(idx);
            }
        }

        cx.check_host_keys(&n.host);
        let h = &n.host;
        let platform = h.platform.as_ref().or(d.platform.as_ref());
        let interface = h.interface.as_ref().or(d.interface.as_ref());
        if let Some(p) = platform.filter(|p| p.v == Platform::Aws) {
            if interface.is_none_or(|i| i.v == DEFAULT_INTERFACE) {
                // The interface's own line if given, else the platform's.
                let span = interface.map_or(&p.span, |i| &i.span);
                aws_eth0
                    .entry((span.start, span.end))
                    .or_default()
                    .push(n.name.as_ref().map(|s| s.v.clone()).unwrap_or_default());
            }
        }
        let key_list = h
            .ssh_authorized_keys
            .as_ref()
            .or(d.ssh_authorized_keys.as_ref());
        let keys_span = key_list.map(|l| l.span.clone());
        let keys = key_list
            .map(|l: &List<String>| l.v.iter().map(|k| k.v.clone()).collect())
            .unwrap_or_default();
        nodes.push(Node {
            name: n.name.as_ref().map(|s| s.v.clone()).unwrap_or_default(),
            roles,
            address: ip.map(|ip| ip.to_string()).unwrap_or_default(),
            network: network.unwrap_or(0) as u32,
            platform: h
                .platform
                .as_ref()
                .or(d.platform.as_ref())
                .map_or(DEFAULT_PLATFORM, |p| p.v),
            interface: h
                .interface
                .as_ref()
                .or(d.interface.as_ref())
                .map_or(DEFAULT_INTERFACE.to_string(), |s| s.v.clone()),
            user: h
                .user
                .as_ref()
                .or(d.user.as_ref())
                .map_or(DEFAULT_USER.to_string(), |s| s.v.clone()),
        });
        node_extras.push(NodeExtra {
            ssh_authorized_keys: keys,
            keys_span,
            password_hash: n
                .host
                .password_hash
                .as_ref()
                .or(d.password_hash.as_ref())
                .filter(|p| check_password_hash(&p.v).is_ok())
                .map(|p| p.v.clone()),
        });
        node_nets.push(network);
    }
    // Ubuntu on EC2 names interfaces the systemd way: the ENA device of a
    // Nitro instance sits in PCI slot 5, so the first interface is ens5
    // (examples/aws; the stromasys AWS guide's "Interface naming on Linux
    // hosts with enhanced networking"); eth0 only on the Xen types.
    for ((start, end), names) in aws_eth0 {
        let shown = if names.len() > 5 {
            format!("{} and {} more", names[..5].join(", "), names.len() - 5)
        } else {
            names.join(", ")
        };
        let d = cx
            .diag(
                start..end,
                format!(
                    "platform aws with interface eth0 (nodes {shown}): on EC2's Nitro instances Ubuntu names the first interface ens5, so keepalived and the VIP would be on an interface that does not exist"
                ),
            )
            .with_help(
                "set interface = \"ens5\" (every current instance type is Nitro; eth0 is the name only on the older Xen types such as t2 and m4)",
            );
        cx.warnings.push(d);
    }
    Nodes {
        list: nodes,
        extras: node_extras,
        spans: node_spans,
        by_name: node_by_name,
        by_addr: node_by_addr,
        nets: node_nets,
        by_role,
        lb_by_net,
        incomplete: nodes_incomplete,
    }
}

/// The `[[vip]]` table, resolved (VRIDs not yet assigned: see `assign_vrids`).
struct Vips<'r> {
    list: Vec<Vip>,
    /// Each VIP's network, where it could be resolved.
    nets: Vec<Option<usize>>,
    by_name: HashMap<&'r str, usize>,
    /// Host-side only (haseed lab), not part of the plugin contract.
    max_outage_ms: Vec<Option<u64>>,
}

fn vips<'r>(cx: &mut Cx<'_>, raw: &'r RawFile, nets: &Networks<'r>, nodes: &Nodes<'r>) -> Vips<'r> {
    let Networks {
        list: networks,
        by_name: net_by_name,
        cidrs,
        gateways,
        ..
    } = nets;
    let Nodes {
        list: node_list,
        by_name: node_by_name,
        by_addr: node_by_addr,
        nets: node_nets,
        lb_by_net,
        incomplete: nodes_incomplete,
        ..
    } = nodes;
    let nodes = node_list;
    let net_names = || network_names(raw);
    let node_label = |i: usize| nm(&nodes[i].name);
    let vip_name_spans = name_spans(&raw.vips, |v| v.name.as_ref());
    let mut vip_by_name: HashMap<&str, usize> = HashMap::new();
    let mut vip_by_addr: HashMap<IpAddr, usize> = HashMap::new();
    let mut vips: Vec<Vip> = Vec::with_capacity(raw.vips.len());
    let mut vip_nets: Vec<Option<usize>> = Vec::with_capacity(raw.vips.len());
    let mut vip_max_outage_ms: Vec<Option<u64>> = Vec::with_capacity(raw.vips.len());
    for (i, v) in raw.vips.iter().enumerate() {
        if let Some(name) = &v.name {
            cx.unique_name(&mut vip_by_name, &vip_name_spans, name, i, &VIP_NAME);
        }
        let label = v.name.as_ref().map_or(Cow::Borrowed("?"), |s| nm(&s.v));
        let name_span = v.name.as_ref().map_or(v.span.clone(), |s| s.span.clone());

        let network = v
            .network
            .as_ref()
            .and_then(|nn| match net_by_name.get(nn.v.as_str()) {
                Some(&ni) => Some(ni),
                None => {
                    let d = cx
                        .diag(nn.span.clone(), format!("unknown network {}", show(&nn.v)))
                        .with_help(format!("defined networks: {}", net_names()));
                    cx.push(d);
                    None
                }
            });

        let ip = v.address.as_ref().and_then(|a| {
            let ip = cx.ip(a, "address", "VIP", &label)?;
            if let Some(what) = net::unusable(ip) {
                cx.err(a.span.clone(), format!("address {ip} of VIP {label} is {what}"));
            }
            if let Some(ni) = network {
                if let Some(c) = cidrs[ni] {
                    let net_label = nm(&networks[ni].name);
                    if !c.contains(ip) {
                        cx.err(
                            a.span.clone(),
                            format!("address {ip} of VIP {label} is outside its network {net_label} ({c})"),
                        );
                    } else if let Some(what) = c.reserved(ip) {
                        cx.err(
                            a.span.clone(),
                            format!("address {ip} of VIP {label} is {what} of network {net_label} ({c})"),
                        );
                    }
                    if let Some((g, gspan)) = &gateways[ni] {
                        if *g == ip {
                            let d = cx
                                .diag(
                                    a.span.clone(),
                                    format!("address {ip} of VIP {label} is the gateway of network {net_label}"),
                                )
                                .with_label(gspan.clone(), "gateway set here");
                            cx.push(d);
                        }
                    }
                }
            }
            if let Some(&ni) = node_by_addr.get(&ip) {
                let mut d = cx.diag(
                    a.span.clone(),
                    format!(
                        "address {ip} of VIP {label} is the address of node {}",
                        node_label(ni)
                    ),
                );
                if let Some(s) = &raw.nodes[ni].address {
                    d = d.with_label(s.span.clone(), "node address set here");
                }
                cx.push(d);
            }
            match vip_by_addr.get(&ip) {
                Some(&first) => {
                    let mut d = cx.diag(
                        a.span.clone(),
                        format!("duplicate VIP address {ip}: VIP {label} and VIP {}", nm(&vips[first].name)),
                    );
                    if let Some(s) = &raw.vips[first].address {
                        d = d.with_label(s.span.clone(), "first used here");
                    }
                    cx.push(d);
                }
                None => {
                    vip_by_addr.insert(ip, i);
                }
            }
            Some(ip)
        });

        // A route-table ("overlay") VIP lives outside every subnet: its holders may sit in
        // different subnets (AZs); every other VIP needs its holders on its own network.
        let overlay = v
            .aws
            .as_ref()
            .and_then(|a| a.method.as_ref())
            .is_some_and(|m| m.v == AwsMethod::RouteTable);

        // holders
        let mut holders: Vec<u32> = Vec::new();
        let mut holders_ok = false;
        match &v.holders {
            Some(list) => {
                holders_ok = true;
                if list.v.is_empty() {
                    cx.err(
                        list.span.clone(),
                        format!("VIP {label} has no holders: holders is empty"),
                    );
                }
                let mut seen: HashMap<usize, &Span> = HashMap::new();
                for h in &list.v {
                    let Some(&ni) = node_by_name.get(h.v.as_str()) else {
                        cx.err(
                            h.span.clone(),
                            format!("unknown node {} in holders of VIP {label}", show(&h.v)),
                        );
                        holders_ok = false;
                        continue;
                    };
                    if let Some(first) = seen.get(&ni) {
                        let d = cx
                            .diag(
                                h.span.clone(),
                                format!(
                                    "node {} is listed twice in holders of VIP {label}",
                                    nm(&h.v)
                                ),
                            )
                            .with_label((*first).clone(), "first listed here");
                        cx.push(d);
                        continue;
                    }
                    seen.insert(ni, &h.span);
                    if let (Some(vn), Some(nn), false) = (network, node_nets[ni], overlay) {
                        if vn != nn {
                            cx.err(
                                h.span.clone(),
                                format!(
                                    "node {} in holders of VIP {label} is not on network {} (it is on {})",
                                    nm(&h.v),
                                    nm(&networks[vn].name),
                                    nm(&networks[nn].name)
                                ),
                            );
                        }
                    }
                    holders.push(ni as u32);
                }
            }
            None if v.holders_bad => {}
            None => {
                if let Some(ni) = network {
                    holders = lb_by_net.get(&ni).cloned().unwrap_or_default();
                    holders_ok = true;
                    if holders.is_empty() && !nodes_incomplete {
                        let d = cx
                            .diag(
                                name_span.clone(),
                                format!(
                                    "VIP {label} has no holders: no node with role lb on network {}; add holders = [...]",
                                    nm(&networks[ni].name)
                                ),
                            );
                        cx.push(d);
                    }
                }
            }
        }

        // master / nopreempt
        let mut master = None;
        if let Some(m) = &v.master {
            match node_by_name.get(m.v.as_str()) {
                None => cx.err(
                    m.span.clone(),
                    format!("unknown node {} as master of VIP {label}", show(&m.v)),
                ),
                Some(&ni) => {
                    if holders.contains(&(ni as u32)) {
                        master = Some(ni as u32);
                    } else if holders_ok {
                        let d = cx
                            .diag(
                                m.span.clone(),
                                format!(
                                    "master {} of VIP {label} is not one of its holders",
                                    nm(&m.v)
                                ),
                            )
                            .with_help(format!(
                                "holders: {}",
                                name_list(holders.iter().map(|&h| nodes[h as usize].name.as_str()))
                            ));
                        cx.push(d);
                    }
                }
            }
        }
        if let (Some(np), Some(m)) = (&v.nopreempt, &v.master) {
            if np.v {
                let d = cx
                    .diag(
                        np.span.clone(),
                        format!(
                            "nopreempt with a MASTER state: VIP {label} sets master = {} (keepalived ignores nopreempt on a MASTER)",
                            nm(&m.v)
                        ),
                    )
                    .with_label(m.span.clone(), "master set here")
                    .with_help("remove nopreempt (a VIP with a master preempts), or remove master");
                cx.push(d);
            }
        }
        let nopreempt = v.master.is_none() && v.nopreempt.as_ref().is_none_or(|n| n.v);

        let vrid = v
            .vrid
            .as_ref()
            .and_then(|r| cx.int_in(r, &format!("vrid of VIP {label}"), 1, 255))
            .map_or(0, |r| r as u8);

        let aws = aws_move(cx, v, &label, &holders, holders_ok, nodes);
        // Host-side only (haseed lab), not part of the plugin contract.
        vip_max_outage_ms.push(v.max_outage_ms.as_ref().and_then(|m| {
            cx.int_in(m, &format!("max_outage_ms of VIP {label}"), 1, 60_000)
                .map(|m| m as u64)
        }));

        vips.push(Vip {
            name: v.name.as_ref().map(|s| s.v.clone()).unwrap_or_default(),
            address: ip.map(|ip| ip.to_string()).unwrap_or_default(),
            network: network.unwrap_or(0) as u32,
            holders,
            vrid,
            master,
            nopreempt,
            aws,
        });
        vip_nets.push(network);
    }
    Vips {
        list: vips,
        nets: vip_nets,
        by_name: vip_by_name,
        max_outage_ms: vip_max_outage_ms,
    }
}

/// VRIDs: explicit ones must be unique per network; the rest are assigned `base`, `base + 1`,
/// ... per network in file order (255 wraps to 1), skipping the explicit ones.
fn assign_vrids(
    cx: &mut Cx<'_>,
    raw: &RawFile,
    nets: &Networks<'_>,
    vips: &mut Vips<'_>,
    base: u8,
) {
    let networks = &nets.list;
    let vip_nets = &vips.nets;
    let vips = &mut vips.list;
    {
        // network -> vrid -> VIP that uses it
        let mut used: HashMap<usize, Box<[Option<usize>; 256]>> = HashMap::new();
        let mut count: HashMap<usize, usize> = HashMap::new();
        for (i, v) in raw.vips.iter().enumerate() {
            let Some(ni) = vip_nets[i] else { continue };
            let c = count.entry(ni).or_default();
            *c += 1;
            if *c == 256 {
                let d = cx
                    .diag(
                        v.name.as_ref().map_or(v.span.clone(), |s| s.span.clone()),
                        format!(
                            "network {} has more than 255 VIPs (VRRP virtual router ids are 1..=255)",
                            nm(&networks[ni].name)
                        ),
                    )
                    .with_help("split the VIPs over several networks");
                cx.push(d);
            }
            let vrid = vips[i].vrid;
            if vrid == 0 {
                continue;
            }
            let slots = used.entry(ni).or_insert_with(|| Box::new([None; 256]));
            match slots[vrid as usize] {
                Some(first) => {
                    let mut d = cx.diag(
                        v.vrid.as_ref().map_or(v.span.clone(), |r| r.span.clone()),
                        format!(
                            "vrid {vrid} of VIP {} is already used by VIP {} on network {}",
                            nm(&vips[i].name),
                            nm(&vips[first].name),
                            nm(&networks[ni].name)
                        ),
                    );
                    if let Some(r) = &raw.vips[first].vrid {
                        d = d.with_label(r.span.clone(), "first used here");
                    }
                    cx.push(d);
                }
                None => slots[vrid as usize] = Some(i),
            }
        }
        // The k-th VRID tried on a network, k = 0..255.
        let nth = |k: usize| (usize::from(base) - 1 + k) % 255 + 1;
        let mut tried: HashMap<usize, usize> = HashMap::new();
        for i in 0..vips.len() {
            let Some(ni) = vip_nets[i] else { continue };
            if vips[i].vrid != 0 || raw.vips[i].vrid.is_some() {
                continue;
            }
            let slots = used.get(&ni);
            let k = tried.entry(ni).or_insert(0);
            while *k < 255 && slots.is_some_and(|s| s[nth(*k)].is_some()) {
                *k += 1;
            }
            if *k < 255 {
                vips[i].vrid = nth(*k) as u8;
                *k += 1;
            }
            // else: more than 255 VIPs, reported above
        }
    }
}

/// The `[[service]]` table, resolved; overlapping ports on one VIP are reported.
fn services(cx: &mut Cx<'_>, raw: &RawFile, nodes: &Nodes<'_>, vips: &Vips<'_>) -> Vec<Service> {
    let by_role = &nodes.by_role;
    let nodes_incomplete = nodes.incomplete;
    let vip_by_name = &vips.by_name;
    let vips = &vips.list;
    let svc_name_spans = name_spans(&raw.services, |s| s.name.as_ref());
    let mut svc_by_name: HashMap<&str, usize> = HashMap::new();
    let mut services: Vec<Service> = Vec::with_capacity(raw.services.len());
    // VIP -> (first, last, service, span of its ports)
    let mut ports_by_vip: HashMap<usize, Vec<(u16, u16, usize, Span)>> = HashMap::new();
    let vip_names = || {
        name_list(
            raw.vips
                .iter()
                .filter_map(|v| v.name.as_ref())
                .map(|v| v.v.as_str()),
        )
    };
    for (i, s) in raw.services.iter().enumerate() {
        if let Some(name) = &s.name {
            cx.unique_name(&mut svc_by_name, &svc_name_spans, name, i, &SERVICE_NAME);
        }
        let label = s.name.as_ref().map_or(Cow::Borrowed("?"), |n| nm(&n.v));
        let name_span = s.name.as_ref().map_or(s.span.clone(), |n| n.span.clone());

        let vip = s
            .vip
            .as_ref()
            .and_then(|v| match vip_by_name.get(v.v.as_str()) {
                Some(&vi) => Some(vi),
                None => {
                    let d = cx
                        .diag(
                            v.span.clone(),
                            format!("unknown VIP {} in service {label}", show(&v.v)),
                        )
                        .with_help(format!("defined VIPs: {}", vip_names()));
                    cx.push(d);
                    None
                }
            });

        let mut ports: Option<(u16, u16, Span)> = None;
        match (&s.port, &s.port_range) {
            (Some(p), Some(r)) => {
                let d = cx
                    .diag(
                        r.span.clone(),
                        format!("service {label} sets both port and port_range; use one"),
                    )
                    .with_label(p.span.clone(), "port set here");
                cx.push(d);
            }
            (None, None) => {
                if !s.port_bad {
                    let d = cx
                        .diag(
                            name_span.clone(),
                            format!("service {label} has neither port nor port_range"),
                        )
                        .with_help("set port = N or port_range = \"FIRST-LAST\"");
                    cx.push(d);
                }
            }
            (Some(p), None) => {
                if let Some(n) = cx.int_in(p, &format!("port of service {label}"), 1, 65535) {
                    ports = Some((n as u16, n as u16, p.span.clone()));
                }
            }
            (None, Some(r)) => match parse_port_range(&r.v) {
                Ok((a, b)) => ports = Some((a, b, r.span.clone())),
                Err(e) => cx.err(r.span.clone(), e),
            },
        }
        let mut backend_port = ports.as_ref().filter(|_| s.port.is_some()).map(|p| p.0);
        if let Some(bp) = &s.backend_port {
            if s.port_range.is_some() {
                let d = cx
                    .diag(
                        bp.span.clone(),
                        format!("backend_port is not allowed with port_range (service {label})"),
                    )
                    .with_help(
                        "with a port range each backend gets the port the client connected to",
                    );
                cx.push(d);
            } else if let Some(n) =
                cx.int_in(bp, &format!("backend_port of service {label}"), 1, 65535)
            {
                backend_port = Some(n as u16);
            }
        }

        let mut backends = Vec::new();
        if let Some(role) = &s.backend_role {
            backends = by_role[role_index(role.v)].clone();
            if backends.is_empty() && !nodes_incomplete {
                cx.err(
                    role.span.clone(),
                    format!(
                        "service {label} has no backends: no node has role {}",
                        role.v.as_str()
                    ),
                );
            }
        }

        let check = check_override(cx, &s.check, &label);
        // Only for a well-formed range on its own: other mistakes have their own message.
        if let (Some(r), None, Some(_), None, true) = (
            &s.port_range,
            &s.port,
            &ports,
            &check.port,
            s.check.port.is_none(),
        ) {
            // haproxy refuses a checked server that has neither a service
            // port nor a check port ("server has neither service port nor check port").
            let d = cx
                .diag(
                    r.span.clone(),
                    format!("service {label} uses port_range but sets no check port: haproxy cannot health-check a backend without a port"),
                )
                .with_help("add check = { port = N }, a port every backend answers on (e.g. a node health endpoint)");
            cx.push(d);
        }

        if let (Some(vi), Some((a, b, span))) = (vip, &ports) {
            ports_by_vip
                .entry(vi)
                .or_default()
                .push((*a, *b, i, span.clone()));
        }
        let (port_first, port_last) = ports.as_ref().map_or((0, 0), |p| (p.0, p.1));
        services.push(Service {
            name: s.name.as_ref().map(|n| n.v.clone()).unwrap_or_default(),
            vip: vip.unwrap_or(0) as u32,
            port_first,
            port_last,
            backend_role: s.backend_role.as_ref().map_or(Role::Lb, |r| r.v),
            backends,
            backend_port,
            mode: s.mode.as_ref().map_or(ProxyMode::Tcp, |m| m.v),
            balance: s.balance.as_ref().map(|b| b.v),
            check,
            bind_vip: s.bind_vip.as_ref().is_some_and(|b| b.v),
        });
    }
    // overlapping frontend ports on one VIP (in VIP file order, for stable output)
    let mut vip_keys: Vec<usize> = ports_by_vip.keys().copied().collect();
    vip_keys.sort_unstable();
    for vi in vip_keys {
        let Some(list) = ports_by_vip.get_mut(&vi) else {
            continue;
        };
        list.sort_unstable_by_key(|&(a, _, i, _)| (a, i));
        let mut cur: Option<(u16, u16, usize, Span)> = None;
        for item in list.iter() {
            if let Some(c) = &cur {
                if item.0 <= c.1 {
                    // report at the later one in the file
                    let (later, earlier) = if item.2 > c.2 { (item, c) } else { (c, item) };
                    let d = cx
                        .diag(
                            later.3.clone(),
                            format!(
                                "{} of service {} overlap {} of service {} on VIP {}",
                                ports_text(later.0, later.1),
                                nm(&services[later.2].name),
                                ports_text(earlier.0, earlier.1),
                                nm(&services[earlier.2].name),
                                nm(&vips[vi].name)
                            ),
                        )
                        .with_label(earlier.3.clone(), "overlapping ports set here");
                    cx.push(d);
                }
            }
            if cur.as_ref().is_none_or(|c| item.1 > c.1) {
                cur = Some(item.clone());
            }
        }
    }
    services
}

/// The `[[plugin]]` list: paths relative to the site file's directory.
///
/// One component pinned twice runs twice, each time on the plans the first run made: a
/// priority nudge is applied twice (lb1's 244 became 234 when `plugin add` appended a second
/// entry for the same file, issue 22). So a repeated sha256 is an error at the later entry
/// unless that entry says `allow_repeat = true`.
fn plugins(cx: &mut Cx<'_>, raw: &RawFile, site_path: &Path) -> Vec<PluginRef> {
    let dir = site_path.parent().unwrap_or(Path::new(""));
    let mut plugins = Vec::with_capacity(raw.plugins.len());
    let mut by_sha: HashMap<String, &Sp<String>> = HashMap::new();
    for p in &raw.plugins {
        if let Some(h) = &p.sha256 {
            let key = h.v.to_ascii_lowercase();
            match by_sha.get(&key) {
                Some(first) if !p.allow_repeat.as_ref().is_some_and(|a| a.v) => {
                    let d = cx
                        .diag(
                            h.span.clone(),
                            "this [[plugin]] pins the same component as an earlier one: it would run twice",
                        )
                        .with_label(first.span.clone(), "first pinned here")
                        .with_help(
                            "remove one of the entries, or add allow_repeat = true to this one if running it twice is intended",
                        );
                    cx.push(d);
                }
                Some(_) => {}
                None => {
                    by_sha.insert(key, h);
                }
            }
        }
        let mut ok = true;
        if let Some(path) = &p.path {
            if path.v.is_empty() || path.v.contains('\0') {
                cx.err(path.span.clone(), "plugin path must be a non-empty path");
                ok = false;
            }
        }
        let scope = p.scope.as_ref().map(|list| {
            for path in &list.v {
                if let Err(why) = crate::policy::scope::check(std::slice::from_ref(&path.v)) {
                    cx.err(path.span.clone(), why);
                }
            }
            list.v.iter().map(|p| p.v.clone()).collect::<Vec<_>>()
        });
        let mut sha = String::new();
        if let Some(h) = &p.sha256 {
            if h.v.len() != 64 || !h.v.bytes().all(|c| c.is_ascii_hexdigit()) {
                cx.err(
                    h.span.clone(),
                    format!("sha256 must be 64 hexadecimal digits, found {}", show(&h.v)),
                );
                ok = false;
            }
            sha = h.v.to_ascii_lowercase();
        }
        if let (Some(path), true) = (&p.path, ok) {
            let given = PathBuf::from(&path.v);
            plugins.push(PluginRef {
                path: if given.is_absolute() {
                    given
                } else {
                    dir.join(given)
                },
                path_text: path.v.clone(),
                sha256: sha,
                settings_json: p.settings_json.clone().unwrap_or_else(|| "{}".into()),
                settings_at: p.settings_at.clone(),
                span: path.span.clone(),
                scope,
            });
        }
    }
    plugins
}

fn check_override(cx: &mut Cx<'_>, c: &RawCheck, label: &str) -> CheckOverride {
    let u32_of = |x: Option<i64>| x.map(|v| v as u32);
    let inter_ms = c.inter_ms.as_ref().and_then(|v| {
        cx.int_in(
            v,
            &format!("check inter_ms of service {label}"),
            100,
            u32::MAX as i64,
        )
    });
    let rise = c
        .rise
        .as_ref()
        .and_then(|v| cx.int_in(v, &format!("check rise of service {label}"), 1, 1000));
    let fall = c
        .fall
        .as_ref()
        .and_then(|v| cx.int_in(v, &format!("check fall of service {label}"), 1, 1000));
    let port = c
        .port
        .as_ref()
        .and_then(|v| cx.int_in(v, &format!("check port of service {label}"), 1, 65535));
    let http = c
        .http
        .as_ref()
        .and_then(|h| match crate::check::http_check(&h.v) {
            Ok(()) => Some(h.v.clone()),
            Err(e) => {
                cx.err(
                    h.span.clone(),
                    format!("check http {} of service {label} {e}", show(&h.v)),
                );
                None
            }
        });
    CheckOverride {
        inter_ms: u32_of(inter_ms),
        rise: u32_of(rise),
        fall: u32_of(fall),
        port: port.map(|p| p as u16),
        http,
    }
}

/// `eipalloc-` then 8 or 17 lowercase hex digits (the two lengths AWS issues).
pub(super) fn valid_allocation_id(s: &str) -> bool {
    aws_id(s, "eipalloc-")
}

/// `rtb-` then 8 or 17 lowercase hex digits.
pub(super) fn valid_route_table_id(s: &str) -> bool {
    aws_id(s, "rtb-")
}

fn aws_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|hex| {
        matches!(hex.len(), 8 | 17)
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The VIP's `[vip.aws]` table checked against its holders: required when any holder runs on
/// AWS (VRRP alone cannot move an address in a VPC), refused otherwise, and every holder of
/// an AWS VIP must be on AWS (the notify script calls the EC2 API on the new MASTER).
fn aws_move(
    cx: &mut Cx<'_>,
    v: &RawVip,
    label: &str,
    holders: &[u32],
    holders_ok: bool,
    nodes: &[Node],
) -> Option<AwsVipMove> {
    let name_span = v.name.as_ref().map_or(v.span.clone(), |s| s.span.clone());
    let on_aws: Vec<&str> = holders
        .iter()
        .map(|&h| &nodes[h as usize])
        .filter(|n| n.platform == Platform::Aws)
        .map(|n| n.name.as_str())
        .collect();
    let Some(a) = &v.aws else {
        if !on_aws.is_empty() && holders_ok {
            let d = cx
                .diag(
                    name_span,
                    format!(
                        "VIP {label} is held by AWS node{} {} but says not how it moves on AWS",
                        if on_aws.len() == 1 { "" } else { "s" },
                        name_list(on_aws.iter().copied())
                    ),
                )
                .with_help(
                    "add aws = { method = \"secondary-ip\" } (one subnet), \
                     { method = \"elastic-ip\", allocation_id = \"eipalloc-...\" } or \
                     { method = \"route-table\", route_tables = [\"rtb-...\"] } (across AZs)",
                );
            cx.push(d);
        }
        return None;
    };
    if on_aws.is_empty() {
        if holders_ok && !holders.is_empty() {
            let d = cx
                .diag(
                    a.span.clone(),
                    format!("VIP {label} sets aws, but none of its holders has platform aws"),
                )
                .with_help("remove the aws table, or set platform = \"aws\" on its holders");
            cx.push(d);
        }
        return None;
    }
    if on_aws.len() != holders.len() {
        let others = holders
            .iter()
            .map(|&h| &nodes[h as usize])
            .filter(|n| n.platform != Platform::Aws)
            .map(|n| n.name.as_str());
        let d = cx
            .diag(
                name_span,
                format!(
                    "VIP {label} mixes AWS holders ({}) with holders on other platforms ({})",
                    name_list(on_aws.iter().copied()),
                    name_list(others)
                ),
            )
            .with_help("a VIP moves either through the EC2 API or by VRRP alone; split it");
        cx.push(d);
    }
    let method = a.method.as_ref()?;
    let refuse = |cx: &mut Cx<'_>, span: &Span, key: &str| {
        cx.err(
            span.clone(),
            format!(
                "{key} does not apply to method {} (VIP {label})",
                match method.v {
                    AwsMethod::SecondaryIp => "secondary-ip",
                    AwsMethod::ElasticIp => "elastic-ip",
                    AwsMethod::RouteTable => "route-table",
                }
            ),
        );
    };
    match method.v {
        AwsMethod::SecondaryIp => {
            if let Some(x) = &a.allocation_id {
                refuse(cx, &x.span, "allocation_id");
            }
            if let Some(x) = &a.route_tables {
                refuse(cx, &x.span, "route_tables");
            }
            Some(AwsVipMove::SecondaryIp)
        }
        AwsMethod::ElasticIp => {
            if let Some(x) = &a.route_tables {
                refuse(cx, &x.span, "route_tables");
            }
            let Some(id) = &a.allocation_id else {
                cx.err(
                    method.span.clone(),
                    format!(
                        "method elastic-ip of VIP {label} needs allocation_id = \"eipalloc-...\""
                    ),
                );
                return None;
            };
            if !valid_allocation_id(&id.v) {
                let d = cx
                    .diag(
                        id.span.clone(),
                        format!(
                            "allocation_id {} of VIP {label} is not an Elastic IP allocation id",
                            show(&id.v)
                        ),
                    )
                    .with_help(
                        "an allocation id is eipalloc- followed by 8 or 17 lowercase hex digits",
                    );
                cx.push(d);
                return None;
            }
            Some(AwsVipMove::ElasticIp(id.v.clone()))
        }
        AwsMethod::RouteTable => {
            if let Some(x) = &a.allocation_id {
                refuse(cx, &x.span, "allocation_id");
            }
            let Some(list) = &a.route_tables else {
                cx.err(
                    method.span.clone(),
                    format!(
                        "method route-table of VIP {label} needs route_tables = [\"rtb-...\", ...]"
                    ),
                );
                return None;
            };
            if list.v.is_empty() {
                cx.err(
                    list.span.clone(),
                    format!("route_tables of VIP {label} is empty"),
                );
                return None;
            }
            let mut ok = true;
            let mut seen: HashMap<&str, &Span> = HashMap::new();
            for r in &list.v {
                if !valid_route_table_id(&r.v) {
                    let d = cx
                        .diag(
                            r.span.clone(),
                            format!(
                                "{} in route_tables of VIP {label} is not a route table id",
                                show(&r.v)
                            ),
                        )
                        .with_help(
                            "a route table id is rtb- followed by 8 or 17 lowercase hex digits",
                        );
                    cx.push(d);
                    ok = false;
                } else if let Some(first) = seen.insert(r.v.as_str(), &r.span) {
                    let d = cx
                        .diag(
                            r.span.clone(),
                            format!("route table {} is listed twice for VIP {label}", r.v),
                        )
                        .with_label(first.clone(), "first listed here");
                    cx.push(d);
                    ok = false;
                }
            }
            ok.then(|| AwsVipMove::RouteTable(list.v.iter().map(|r| r.v.clone()).collect()))
        }
    }
}
