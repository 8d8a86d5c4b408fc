use std::path::Path;

use super::*;
use crate::contract::{AwsVipMove, Balance, Platform, ProxyMode, Role};

const EXAMPLE: &str = r#"[site]
name = "pi-k8s"

[defaults]
platform = "raspios"
interface = "eth0"
user = "pi"
ssh_authorized_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample ops@example"]

[[network]]
name = "lan"
cidr = "192.168.3.0/24"
gateway = "192.168.3.1"
dns = ["192.168.3.1"]

[[vip]]
name = "k8s-api"
address = "192.168.3.240"
network = "lan"

[[service]]
name = "kube-apiserver"
vip = "k8s-api"
port = 9000
backend_role = "master"
backend_port = 6443
mode = "tcp"

[[node]]
name = "lb1"
roles = ["lb"]
address = "192.168.3.241"

[[node]]
name = "lb2"
roles = ["lb"]
address = "192.168.3.242"

[[node]]
name = "master1"
roles = ["master"]
address = "192.168.3.251"

[[node]]
name = "master2"
roles = ["master"]
address = "192.168.3.252"

[[node]]
name = "master3"
roles = ["master"]
address = "192.168.3.253"
"#;

/// 17 lines; whatever is appended starts on line 18.
const MIN: &str = r#"[site]
name = "t"

[[network]]
name = "lan"
cidr = "10.0.0.0/24"
gateway = "10.0.0.1"

[[node]]
name = "lb1"
roles = ["lb"]
address = "10.0.0.11"

[[node]]
name = "m1"
roles = ["master"]
address = "10.0.0.21"
"#;

/// MIN plus a VIP and a service: 29 lines; appended text starts on line 30.
const SVC: &str = r#"[site]
name = "t"

[[network]]
name = "lan"
cidr = "10.0.0.0/24"
gateway = "10.0.0.1"

[[node]]
name = "lb1"
roles = ["lb"]
address = "10.0.0.11"

[[node]]
name = "m1"
roles = ["master"]
address = "10.0.0.21"

[[vip]]
name = "api"
address = "10.0.0.5"
network = "lan"

[[service]]
name = "s1"
vip = "api"
port = 9000
backend_role = "master"

"#;

fn file() -> &'static Path {
    Path::new("site.toml")
}

fn ok(src: &str) -> Inventory {
    match parse(file(), src) {
        Ok(inv) => inv,
        Err(d) => panic!("expected success, got:\n{d}"),
    }
}

fn fail(src: &str) -> Diagnostics {
    match parse(file(), src) {
        Ok(_) => panic!("expected errors for:\n{src}"),
        Err(d) => d,
    }
}

/// Asserts an error whose message contains `msg` at `line:col`; returns it.
fn err_at(src: &str, msg: &str, line: usize, col: usize) -> Diagnostic {
    let d = fail(src);
    let text = d.to_string();
    let Some(item) = d.items.iter().find(|i| i.message.contains(msg)) else {
        panic!("no error containing {msg:?}; got:\n{text}");
    };
    assert_eq!(
        item.line_col(src),
        Some((line, col)),
        "wrong position for {msg:?}:\n{text}"
    );
    assert!(
        text.contains(&format!("site.toml:{line}:{col}: error: {}", item.message)),
        "{text}"
    );
    item.clone()
}

/// Like [`err_at`], and it is the only error.
fn only_err(src: &str, msg: &str, line: usize, col: usize) -> Diagnostic {
    let d = fail(src);
    assert_eq!(d.items.len(), 1, "expected one error:\n{d}");
    err_at(src, msg, line, col)
}

fn with(base: &str, extra: &str) -> String {
    format!("{base}{extra}")
}

// ---------------------------------------------------------------------------------------
// Valid files
// ---------------------------------------------------------------------------------------

#[test]
fn example_resolves() {
    let inv = ok(EXAMPLE);
    let s = &inv.site;
    assert_eq!(s.name, "pi-k8s");
    assert_eq!(s.stage, "");
    assert_eq!(s.networks.len(), 1);
    assert_eq!(s.networks[0].cidr, "192.168.3.0/24");
    assert_eq!(s.networks[0].gateway.as_deref(), Some("192.168.3.1"));
    assert_eq!(s.networks[0].dns, vec!["192.168.3.1"]);
    assert!(s.networks[0].ntp.is_empty());

    assert_eq!(s.nodes.len(), 5);
    let names: Vec<&str> = s.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["lb1", "lb2", "master1", "master2", "master3"]);
    assert_eq!(s.nodes[0].roles, vec![Role::Lb]);
    assert_eq!(s.nodes[2].roles, vec![Role::Master]);
    assert_eq!(s.nodes[0].address, "192.168.3.241");
    for n in &s.nodes {
        assert_eq!(n.network, 0);
        assert_eq!(n.platform, Platform::Raspios);
        assert_eq!(n.interface, "eth0");
        assert_eq!(n.user, "pi");
    }

    assert_eq!(s.vips.len(), 1);
    let v = &s.vips[0];
    assert_eq!(v.name, "k8s-api");
    assert_eq!(v.address, "192.168.3.240");
    assert_eq!(v.network, 0);
    assert_eq!(v.holders, vec![0, 1]);
    // no vrid_base: the start derived from the site's name
    assert_eq!(v.vrid, super::resolve::derived_vrid_base(&s.name));
    assert_eq!(v.master, None);
    assert!(v.nopreempt);

    assert_eq!(s.services.len(), 1);
    let sv = &s.services[0];
    assert_eq!(sv.name, "kube-apiserver");
    assert_eq!(sv.vip, 0);
    assert_eq!((sv.port_first, sv.port_last), (9000, 9000));
    assert_eq!(sv.backend_role, Role::Master);
    assert_eq!(sv.backends, vec![2, 3, 4]);
    assert_eq!(sv.backend_port, Some(6443));
    assert_eq!(sv.mode, ProxyMode::Tcp);
    assert_eq!(sv.balance, None);
    assert_eq!(sv.check, CheckOverride::default_none());
    assert!(!sv.bind_vip);

    assert!(inv.plugins.is_empty());
    assert_eq!(inv.default_policy_settings, "{}");
    assert_eq!(inv.node_extras.len(), 5);
    assert_eq!(
        inv.node_extras[4].ssh_authorized_keys,
        vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample ops@example"]
    );
    assert_eq!(inv.node_spans.len(), 5);
    assert_eq!(&EXAMPLE[inv.node_spans[0].clone()], "\"lb1\"");
    assert_eq!(&EXAMPLE[inv.node_spans[4].clone()], "\"master3\"");
    assert_eq!(inv.path, file());
    assert_eq!(inv.source, EXAMPLE);
    let d = inv.node_diagnostic(1, "plugin failed");
    assert_eq!(d.line_col(EXAMPLE), Some((35, 8)));
}

trait NoneCheck {
    fn default_none() -> Self;
}
impl NoneCheck for CheckOverride {
    fn default_none() -> Self {
        CheckOverride {
            inter_ms: None,
            rise: None,
            fall: None,
            port: None,
            http: None,
        }
    }
}
use crate::contract::CheckOverride;

#[test]
fn bundled_example_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/examples/pi-k8s/site.toml");
    if !path.exists() {
        return;
    }
    let inv = load(&path).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(inv.site.vips[0].holders, vec![0, 1]);
    assert_eq!(inv.site.services[0].backends, vec![2, 3, 4]);
}

#[test]
fn load_reads_files_and_reports_io_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("site.toml");
    std::fs::write(&path, MIN).unwrap();
    assert_eq!(load(&path).unwrap().site.nodes.len(), 2);

    let missing = dir.path().join("nope.toml");
    let d = load(&missing).unwrap_err();
    assert_eq!(d.items.len(), 1);
    assert_eq!(d.items[0].span, None);
    assert!(d.items[0].message.starts_with("cannot read the site file"));
    assert!(d.to_string().starts_with(&format!(
        "{}: error: cannot read the site file",
        missing.display()
    )));

    std::fs::write(&path, b"[site]\nname = \"\xff\"\n").unwrap();
    let d = load(&path).unwrap_err();
    assert!(d.items[0].message.contains("not UTF-8"), "{d}");

    let d = load(dir.path()).unwrap_err();
    assert_eq!(d.items[0].span, None);
}

#[test]
fn plugins_and_settings() {
    let src = with(
        MIN,
        r#"
[[plugin]]
path = "policies/site.wasm"
sha256 = "ABCDEF0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789"
settings = { rise = 30, name = "x", nested = { list = [1, 2.5, true] } }

[[plugin]]
path = "/abs/other.wasm"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"

[default_policy]
rise = 5
[default_policy.timeouts]
client_ms = 1000
"#,
    );
    let inv = parse(Path::new("conf/site.toml"), &src).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(inv.plugins.len(), 2);
    let p = &inv.plugins[0];
    assert_eq!(p.path, Path::new("conf/policies/site.wasm"));
    assert_eq!(p.path_text, "policies/site.wasm");
    assert_eq!(
        p.sha256,
        "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
    );
    let v: serde_json::Value = serde_json::from_str(&p.settings_json).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"rise": 30, "name": "x", "nested": {"list": [1, 2.5, true]}})
    );
    assert_eq!(&src[p.span.clone()], "\"policies/site.wasm\"");
    assert_eq!(inv.plugins[1].path, Path::new("/abs/other.wasm"));
    assert_eq!(inv.plugins[1].settings_json, "{}");
    let d: serde_json::Value = serde_json::from_str(&inv.default_policy_settings).unwrap();
    assert_eq!(
        d,
        serde_json::json!({"rise": 5, "timeouts": {"client_ms": 1000}})
    );
    // a site file without directory: plugin paths stay relative to the working directory
    let inv = parse(Path::new("site.toml"), &src).unwrap();
    assert_eq!(inv.plugins[0].path, Path::new("policies/site.wasm"));
}

#[test]
fn defaults_inherit_and_nodes_override() {
    let src = r#"[site]
name = "t"
stage = "prod"
[defaults]
platform = "ubuntu"
user = "ops"
ssh_authorized_keys = ["ssh-rsa AAAAB3Nza a@b"]
[[network]]
name = "lan"
cidr = "10.0.0.0/24"
ntp = ["10.0.0.1", "pool.ntp.org"]
[[node]]
name = "a"
roles = ["worker", "db"]
address = "10.0.0.2"
[[node]]
name = "b"
roles = ["worker"]
address = "10.0.0.3"
platform = "aws"
interface = "ens5"
user = "ubuntu"
ssh_authorized_keys = []
"#;
    let inv = ok(src);
    let [a, b] = &inv.site.nodes[..] else {
        panic!()
    };
    assert_eq!(inv.site.stage, "prod");
    assert_eq!(inv.site.networks[0].ntp, vec!["10.0.0.1", "pool.ntp.org"]);
    assert_eq!(inv.site.networks[0].gateway, None);
    assert_eq!(a.roles, vec![Role::Worker, Role::Db]);
    assert_eq!(
        (a.platform, a.interface.as_str(), a.user.as_str()),
        (Platform::Ubuntu, "eth0", "ops")
    );
    assert_eq!(
        (b.platform, b.interface.as_str(), b.user.as_str()),
        (Platform::Aws, "ens5", "ubuntu")
    );
    assert_eq!(
        inv.node_extras[0].ssh_authorized_keys,
        vec!["ssh-rsa AAAAB3Nza a@b"]
    );
    assert!(inv.node_extras[1].ssh_authorized_keys.is_empty());

    // built-in fallbacks
    let inv = ok(MIN);
    let n = &inv.site.nodes[0];
    assert_eq!(
        (n.platform, n.interface.as_str(), n.user.as_str()),
        (Platform::Raspios, "eth0", "pi")
    );
    assert!(inv.node_extras[0].ssh_authorized_keys.is_empty());
}

#[test]
fn vip_holders_master_and_vrids() {
    let src = r#"[site]
name = "t"
vrid_base = 1
[[network]]
name = "a"
cidr = "10.0.0.0/24"
[[network]]
name = "b"
cidr = "10.1.0.0/24"
[[node]]
name = "lb1"
roles = ["lb"]
address = "10.0.0.11"
[[node]]
name = "lb2"
roles = ["lb", "master"]
address = "10.0.0.12"
[[node]]
name = "lb3"
roles = ["lb"]
address = "10.1.0.13"
[[node]]
name = "m1"
roles = ["master"]
address = "10.1.0.21"
[[vip]]
name = "v1"
address = "10.0.0.100"
network = "a"
[[vip]]
name = "v2"
address = "10.0.0.101"
network = "a"
vrid = 1
master = "lb2"
[[vip]]
name = "v3"
address = "10.0.0.102"
network = "a"
holders = ["lb2", "lb1"]
nopreempt = false
[[vip]]
name = "v4"
address = "10.1.0.100"
network = "b"
[[vip]]
name = "v5"
address = "10.1.0.101"
network = "b"
holders = ["m1"]
master = "m1"
nopreempt = false
"#;
    let inv = ok(src);
    let v = &inv.site.vips;
    assert_eq!(v[0].holders, vec![0, 1]);
    assert_eq!(v[0].vrid, 2);
    assert!(v[0].nopreempt);
    assert_eq!(v[1].vrid, 1);
    assert_eq!(v[1].master, Some(1));
    assert!(!v[1].nopreempt);
    assert_eq!(v[2].holders, vec![1, 0]);
    assert_eq!(v[2].vrid, 3);
    assert!(!v[2].nopreempt);
    assert_eq!(v[3].holders, vec![2]);
    assert_eq!(v[3].network, 1);
    assert_eq!(v[3].vrid, 1);
    assert_eq!(v[4].vrid, 2);
    assert_eq!(v[4].master, Some(3));
    assert_eq!(inv.site.nodes[2].network, 1);
}

#[test]
fn service_variants() {
    let src = with(
        SVC,
        r#"[[service]]
name = "nodeports"
vip = "api"
port_range = "30000-32767"
backend_role = "master"
mode = "http"
balance = "leastconn"
bind = "vip"
check = { inter_ms = 3000, rise = 30, fall = 3, port = 29499, http = "GET /healthz" }

[[service]]
name = "s3"
vip = "api"
port = 9001
backend_role = "lb"
check.rise = 2
"#,
    );
    let inv = ok(&src);
    let s = &inv.site.services;
    assert_eq!(s[0].backend_port, Some(9000));
    assert_eq!((s[1].port_first, s[1].port_last), (30000, 32767));
    assert_eq!(s[1].backend_port, None);
    assert_eq!(s[1].mode, ProxyMode::Http);
    assert_eq!(s[1].balance, Some(Balance::Leastconn));
    assert!(s[1].bind_vip);
    assert_eq!(
        s[1].check,
        CheckOverride {
            inter_ms: Some(3000),
            rise: Some(30),
            fall: Some(3),
            port: Some(29499),
            http: Some("GET /healthz".into()),
        }
    );
    assert_eq!(s[2].backends, vec![0]);
    assert_eq!(s[2].check.rise, Some(2));
}

#[test]
fn inline_arrays_of_tables_and_ipv6() {
    let src = r#"site = { name = "v6" }
network = [{ name = "lan", cidr = "2001:DB8::/64", gateway = "2001:db8::1" }]
node = [
  { name = "lb1", roles = ["lb"], address = "2001:db8::11" },
  { name = "lb2", roles = ["lb"], address = "2001:db8::12" },
]
vip = [{ name = "v", address = "2001:db8::100", network = "lan" }]
"#;
    let inv = ok(src);
    assert_eq!(inv.site.networks[0].cidr, "2001:db8::/64");
    assert_eq!(inv.site.vips[0].holders, vec![0, 1]);
    assert_eq!(inv.site.nodes[1].address, "2001:db8::12");
    assert_eq!(&src[inv.node_spans[1].clone()], "\"lb2\"");
}

#[test]
fn longest_prefix_network_wins() {
    let src = r#"[site]
name = "t"
[[network]]
name = "wide"
cidr = "10.0.0.0/8"
[[network]]
name = "narrow"
cidr = "10.1.0.0/16"
[[node]]
name = "a"
roles = ["db"]
address = "10.1.2.3"
[[node]]
name = "b"
roles = ["db"]
address = "10.2.2.3"
"#;
    let inv = ok(src);
    assert_eq!(inv.site.nodes[0].network, 1);
    assert_eq!(inv.site.nodes[1].network, 0);
}

// ---------------------------------------------------------------------------------------
// Generic errors: syntax, unknown keys, types, missing keys, unknown words
// ---------------------------------------------------------------------------------------

#[test]
fn syntax_error() {
    let src = "[site]\nname = \"t\"\n[[node]\n";
    let d = only_err(src, "TOML syntax error", 3, 7);
    assert!(!d.message.contains('\n'));
}

#[test]
fn unknown_keys_everywhere() {
    let src = with(
        SVC,
        "colour = 1\ncheck = { rise = 2, jitter = 1 }\n[[node]]\nname = \"w1\"\nroles = [\"worker\"]\naddress = \"10.0.0.31\"\nhostname = \"x\"\n[extra]\n",
    );
    let d = err_at(&src, "unknown key `colour` in [[service]]", 30, 1);
    assert!(d.help.unwrap().contains("backend_port"));
    err_at(
        &src,
        "unknown key `jitter` in `check` in [[service]]",
        31,
        21,
    );
    err_at(&src, "unknown key `hostname` in [[node]]", 36, 1);
    err_at(&src, "unknown key `extra` in the site file", 37, 2);
    assert_eq!(fail(&src).items.len(), 4);
}

#[test]
fn wrong_types() {
    let src = with(MIN, "[[vip]]\nname = \"v\"\naddress = \"10.0.0.5\"\nnetwork = \"lan\"\nvrid = \"7\"\nnopreempt = 1\nholders = [\"lb1\", 2]\n");
    err_at(
        &src,
        "`vrid` in [[vip]] must be an integer, found a string",
        22,
        8,
    );
    err_at(
        &src,
        "`nopreempt` in [[vip]] must be true or false, found an integer",
        23,
        13,
    );
    err_at(
        &src,
        "`holders` in [[vip]] must be an array of strings; element 2 is an integer",
        24,
        19,
    );
    let src = "node = \"x\"\n[site]\nname = 5\n";
    err_at(
        src,
        "`node` must be an array of tables ([[node]]), found a string",
        1,
        8,
    );
    err_at(
        src,
        "`name` in [site] must be a string, found an integer",
        3,
        8,
    );
}

#[test]
fn missing_required_keys() {
    let src = with(MIN, "\n[[node]]\nname = \"w1\"\nroles = [\"worker\"]\n");
    only_err(&src, "[[node]] is missing required key `address`", 19, 1);
    let src = with(SVC, "[[service]]\nname = \"s2\"\nvip = \"api\"\nport = 1\n");
    only_err(
        &src,
        "[[service]] is missing required key `backend_role`",
        30,
        1,
    );
}

#[test]
fn unknown_words_list_accepted_values() {
    let src = with(
        SVC,
        "mode = \"udp\"\nbalance = \"random\"\nbind = \"all\"\n[[node]]\nname = \"w1\"\nroles = [\"wrker\"]\naddress = \"10.0.0.31\"\nplatform = \"debian\"\n",
    );
    err_at(
        &src,
        "unknown mode `udp`; expected one of: tcp, http",
        30,
        8,
    );
    err_at(
        &src,
        "unknown balance `random`; expected one of: roundrobin, source, leastconn",
        31,
        11,
    );
    err_at(&src, "unknown bind `all`; expected one of: any, vip", 32, 8);
    err_at(
        &src,
        "unknown role `wrker`; expected one of: lb, master, worker, controller, db",
        35,
        10,
    );
    err_at(
        &src,
        "unknown platform `debian`; expected one of: raspios, raspios-legacy, ubuntu-raspi, ubuntu, aws",
        37,
        12,
    );
    let src = with(
        SVC,
        "[[service]]\nname = \"s2\"\nvip = \"api\"\nport = 1\nbackend_role = \"web\"\n",
    );
    err_at(&src, "unknown role `web`", 34, 16);
}

// ---------------------------------------------------------------------------------------
// [site], names, duplicates
// ---------------------------------------------------------------------------------------

#[test]
fn site_name_rules() {
    let d = fail("[[network]]\nname = \"lan\"\ncidr = \"10.0.0.0/24\"\n");
    assert_eq!(d.items[0].message, "missing [site] table");
    assert_eq!(d.items[0].span, None);
    assert!(d
        .to_string()
        .starts_with("site.toml: error: missing [site] table\n"));
    only_err(
        "[site]\nstage = \"x\"\n",
        "[site] is missing required key `name`",
        1,
        1,
    );
    let d = only_err(
        "[site]\nname = \"Pi K8s\"\n",
        "invalid site name `Pi K8s`",
        2,
        8,
    );
    assert!(d.help.unwrap().contains("lowercase"));
    only_err("[site]\nname = \"-x\"\n", "invalid site name `-x`", 2, 8);
    only_err(
        &format!("[site]\nname = \"{}\"\n", "a".repeat(64)),
        "invalid site name",
        2,
        8,
    );
    ok(&format!("[site]\nname = \"{}\"\n", "a".repeat(63)));
}

#[test]
fn node_names_are_hostnames() {
    let src = MIN.replace("name = \"m1\"", "name = \"M_1\"");
    only_err(&src, "invalid node name `M_1`", 15, 8);
    let src = MIN.replace("name = \"m1\"", "name = \"m1-\"");
    only_err(&src, "invalid node name `m1-`", 15, 8);
}

#[test]
fn duplicate_node_name_labels_first() {
    let src = with(
        MIN,
        "[[node]]\nname = \"lb1\"\nroles = [\"worker\"]\naddress = \"10.0.0.31\"\n",
    );
    let d = only_err(&src, "duplicate node name lb1", 19, 8);
    assert_eq!(d.labels.len(), 1);
    assert_eq!(d.labels[0].1, "first defined here");
    assert_eq!(&src[d.labels[0].0.clone()], "\"lb1\"");
    assert_eq!(crate::diag::line_col(&src, d.labels[0].0.start), (10, 8));
    assert!(fail(&src).to_string().contains("first defined here"));
}

#[test]
fn duplicate_node_address() {
    let src = with(
        MIN,
        "[[node]]\nname = \"w1\"\nroles = [\"worker\"]\naddress = \"10.0.0.11\"\n",
    );
    let d = only_err(
        &src,
        "duplicate node address 10.0.0.11: node w1 and node lb1",
        21,
        11,
    );
    assert_eq!(d.labels[0].1, "first used here");
}

#[test]
fn duplicate_network_vip_service_names() {
    let src = with(
        SVC,
        "[[service]]\nname = \"s1\"\nvip = \"api\"\nport = 9001\nbackend_role = \"master\"\n[[vip]]\nname = \"api\"\naddress = \"10.0.0.6\"\nnetwork = \"lan\"\n[[network]]\nname = \"lan\"\ncidr = \"10.9.0.0/24\"\n",
    );
    err_at(&src, "duplicate service name s1", 31, 8);
    err_at(&src, "duplicate VIP name api", 36, 8);
    err_at(&src, "duplicate network name lan", 40, 8);
    assert_eq!(fail(&src).items.len(), 3);
}

// ---------------------------------------------------------------------------------------
// Addresses and networks
// ---------------------------------------------------------------------------------------

fn node(extra_lines: &str) -> String {
    with(
        MIN,
        &format!("[[node]]\nname = \"w1\"\nroles = [\"worker\"]\n{extra_lines}"),
    )
}

#[test]
fn node_address_not_ip() {
    only_err(
        &node("address = \"10.0.0.300\"\n"),
        "address `10.0.0.300` of node w1 is not an IP address",
        21,
        11,
    );
}

#[test]
fn node_address_outside_its_network() {
    only_err(
        &node("address = \"10.0.1.5\"\nnetwork = \"lan\"\n"),
        "address 10.0.1.5 of node w1 is outside its network lan (10.0.0.0/24)",
        21,
        11,
    );
}

#[test]
fn node_address_in_no_network() {
    let d = only_err(
        &node("address = \"10.0.1.5\"\n"),
        "address 10.0.1.5 of node w1 is in no [[network]]",
        21,
        11,
    );
    assert!(d.help.unwrap().contains("network = "));
}

#[test]
fn node_address_network_broadcast_gateway() {
    only_err(
        &node("address = \"10.0.0.0\"\n"),
        "address 10.0.0.0 of node w1 is the network address of network lan (10.0.0.0/24)",
        21,
        11,
    );
    only_err(
        &node("address = \"10.0.0.255\"\n"),
        "address 10.0.0.255 of node w1 is the broadcast address of network lan (10.0.0.0/24)",
        21,
        11,
    );
    let d = only_err(
        &node("address = \"10.0.0.1\"\n"),
        "address 10.0.0.1 of node w1 is the gateway of network lan",
        21,
        11,
    );
    assert_eq!(d.labels[0].1, "gateway set here");
    err_at(
        &node("address = \"127.0.0.1\"\n"),
        "address 127.0.0.1 of node w1 is a loopback address",
        21,
        11,
    );
}

#[test]
fn node_unknown_network() {
    let d = only_err(
        &node("address = \"10.0.0.31\"\nnetwork = \"wan\"\n"),
        "unknown network `wan`",
        22,
        11,
    );
    assert_eq!(d.help.as_deref(), Some("defined networks: lan"));
}

#[test]
fn network_cidr_gateway_dns() {
    let src = "[site]\nname = \"t\"\n[[network]]\nname = \"a\"\ncidr = \"10.0.0.0\"\n[[network]]\nname = \"b\"\ncidr = \"10.0.1.7/24\"\n[[network]]\nname = \"c\"\ncidr = \"10.0.2.0/33\"\n[[network]]\nname = \"d\"\ncidr = \"10.0.3.0/24\"\ngateway = \"10.0.4.1\"\ndns = [\"10.0.3.1\", \"dns.example\"]\n[[network]]\nname = \"e\"\ncidr = \"10.0.5.0/24\"\ngateway = \"10.0.5.255\"\n";
    err_at(src, "invalid cidr `10.0.0.0`", 5, 8);
    let d = err_at(
        src,
        "invalid cidr `10.0.1.7/24`: the host bits are not zero",
        8,
        8,
    );
    assert_eq!(d.help.as_deref(), Some("did you mean \"10.0.1.0/24\"?"));
    err_at(
        src,
        "invalid cidr `10.0.2.0/33`: prefix length /33 is too long",
        11,
        8,
    );
    err_at(
        src,
        "gateway 10.0.4.1 is outside network d (10.0.3.0/24)",
        15,
        11,
    );
    err_at(
        src,
        "dns entry `dns.example` of network d is not an IP address",
        16,
        20,
    );
    err_at(
        src,
        "gateway 10.0.5.255 is the broadcast address of network e",
        20,
        11,
    );
    assert_eq!(fail(src).items.len(), 6);
    let src = "[site]\nname = \"t\"\n[[network]]\nname = \"a\"\ncidr = \"10.0.0.0/24\"\nntp = [\"bad name!\"]\n";
    only_err(
        src,
        "ntp entry `bad name!` of network a is neither an IP address nor a host name",
        6,
        8,
    );
}

// ---------------------------------------------------------------------------------------
// VIPs
// ---------------------------------------------------------------------------------------

fn vip(lines: &str) -> String {
    with(MIN, &format!("[[vip]]\nname = \"v\"\n{lines}"))
}

#[test]
fn vip_failover_objective() {
    let inv = ok(&vip(
        "address = \"10.0.0.5\"\nnetwork = \"lan\"\nmax_outage_ms = 250\n",
    ));
    assert_eq!(inv.vip_max_outage_ms, vec![Some(250)]);
    // Without the key: none (the lab's default, 100 ms, applies).
    let inv = ok(&vip("address = \"10.0.0.5\"\nnetwork = \"lan\"\n"));
    assert_eq!(inv.vip_max_outage_ms, vec![None]);
    only_err(
        &vip("address = \"10.0.0.5\"\nnetwork = \"lan\"\nmax_outage_ms = 0\n"),
        "max_outage_ms of VIP v must be 1..=60000, found 0",
        22,
        17,
    );
}

#[test]
fn vip_address_rules() {
    only_err(
        &vip("address = \"10.0.1.5\"\nnetwork = \"lan\"\n"),
        "address 10.0.1.5 of VIP v is outside its network lan (10.0.0.0/24)",
        20,
        11,
    );
    let d = only_err(
        &vip("address = \"10.0.0.21\"\nnetwork = \"lan\"\n"),
        "address 10.0.0.21 of VIP v is the address of node m1",
        20,
        11,
    );
    assert_eq!(
        crate::diag::line_col(&vip(""), d.labels[0].0.start),
        (17, 11)
    );
    only_err(
        &vip("address = \"10.0.0.5\"\nnetwork = \"wan\"\n"),
        "unknown network `wan`",
        21,
        11,
    );
    only_err(
        &vip("address = \"vip\"\nnetwork = \"lan\"\n"),
        "address `vip` of VIP v is not an IP address",
        20,
        11,
    );
    let src = vip("address = \"10.0.0.5\"\nnetwork = \"lan\"\n[[vip]]\nname = \"w\"\naddress = \"10.0.0.5\"\nnetwork = \"lan\"\n");
    only_err(
        &src,
        "duplicate VIP address 10.0.0.5: VIP w and VIP v",
        24,
        11,
    );
}

#[test]
fn vip_holders_unknown_or_off_network() {
    let src = with(
        MIN,
        "[[network]]\nname = \"b\"\ncidr = \"10.1.0.0/24\"\n[[node]]\nname = \"far\"\nroles = [\"lb\"]\naddress = \"10.1.0.9\"\n[[vip]]\nname = \"v\"\naddress = \"10.0.0.5\"\nnetwork = \"lan\"\nholders = [\"lb1\", \"lb9\", \"far\", \"lb1\"]\n",
    );
    err_at(&src, "unknown node `lb9` in holders of VIP v", 29, 19);
    err_at(
        &src,
        "node far in holders of VIP v is not on network lan (it is on b)",
        29,
        26,
    );
    let d = err_at(&src, "node lb1 is listed twice in holders of VIP v", 29, 33);
    assert_eq!(d.labels[0].1, "first listed here");
    assert_eq!(fail(&src).items.len(), 3);
}

#[test]
fn vip_without_holders() {
    let src = MIN.replace("roles = [\"lb\"]", "roles = [\"worker\"]");
    let src = with(
        &src,
        "[[vip]]\nname = \"k8s-api\"\naddress = \"10.0.0.5\"\nnetwork = \"lan\"\n",
    );
    only_err(
        &src,
        "VIP k8s-api has no holders: no node with role lb on network lan; add holders = [...]",
        19,
        8,
    );
    only_err(
        &vip("address = \"10.0.0.5\"\nnetwork = \"lan\"\nholders = []\n"),
        "VIP v has no holders: holders is empty",
        22,
        11,
    );
}

#[test]
fn vip_master_rules() {
    let d = only_err(
        &vip("address = \"10.0.0.5\"\nnetwork = \"lan\"\nmaster = \"m1\"\n"),
        "master m1 of VIP v is not one of its holders",
        22,
        10,
    );
    assert_eq!(d.help.as_deref(), Some("holders: lb1"));
    only_err(
        &vip("address = \"10.0.0.5\"\nnetwork = \"lan\"\nmaster = \"zz\"\n"),
        "unknown node `zz` as master of VIP v",
        22,
        10,
    );
    let d = only_err(
        &vip("address = \"10.0.0.5\"\nnetwork = \"lan\"\nmaster = \"lb1\"\nnopreempt = true\n"),
        "nopreempt with a MASTER state",
        23,
        13,
    );
    assert_eq!(d.labels[0].1, "master set here");
    assert!(d.help.is_some());
}

#[test]
fn vip_vrid_range_and_collisions() {
    only_err(
        &vip("address = \"10.0.0.5\"\nnetwork = \"lan\"\nvrid = 0\n"),
        "vrid of VIP v must be 1..=255, found 0",
        22,
        8,
    );
    only_err(
        &vip("address = \"10.0.0.5\"\nnetwork = \"lan\"\nvrid = 256\n"),
        "vrid of VIP v must be 1..=255, found 256",
        22,
        8,
    );
    let src = vip("address = \"10.0.0.5\"\nnetwork = \"lan\"\nvrid = 7\n[[vip]]\nname = \"w\"\naddress = \"10.0.0.6\"\nnetwork = \"lan\"\nvrid = 7\n");
    let d = only_err(
        &src,
        "vrid 7 of VIP w is already used by VIP v on network lan",
        27,
        8,
    );
    assert_eq!(d.labels[0].1, "first used here");
    assert_eq!(crate::diag::line_col(&src, d.labels[0].0.start), (22, 8));
    // the same vrid on different networks is fine
    let src = with(&src, "[[network]]\nname = \"b\"\ncidr = \"10.1.0.0/24\"\n");
    let src = src.replace(
        "address = \"10.0.0.6\"\nnetwork = \"lan\"",
        "address = \"10.1.0.6\"\nnetwork = \"b\"\nholders = []",
    );
    let d = fail(&src);
    assert!(
        d.items.iter().all(|i| !i.message.contains("already used")),
        "{d}"
    );
}

/// The start of automatic VRIDs: `[site] vrid_base`, else derived from the site's name, so two
/// sites on one LAN do not both start at 1 (issue 19 item 8).
#[test]
fn vrid_base_explicit_derived_and_wrapping() {
    use super::resolve::derived_vrid_base;
    // 32-bit FNV-1a's published test vectors (draft-eastlake-fnv): "" -> 0x811c9dc5,
    // "a" -> 0xe40c292c, "foobar" -> 0xbf9cf968; the base is 1 + hash % 255.
    assert_eq!(derived_vrid_base(""), (1 + 0x811c_9dc5_u32 % 255) as u8);
    assert_eq!(derived_vrid_base("a"), (1 + 0xe40c_292c_u32 % 255) as u8);
    assert_eq!(
        derived_vrid_base("foobar"),
        (1 + 0xbf9c_f968_u32 % 255) as u8
    );
    assert_ne!(derived_vrid_base("site-a"), derived_vrid_base("site-b"));

    let two = |site: &str| {
        format!(
            "[site]\n{site}\n[[network]]\nname = \"lan\"\ncidr = \"10.0.0.0/24\"\n[[node]]\nname = \"lb1\"\nroles = [\"lb\"]\naddress = \"10.0.0.2\"\nssh_authorized_keys = []\n[[vip]]\nname = \"v\"\naddress = \"10.0.0.5\"\nnetwork = \"lan\"\n[[vip]]\nname = \"w\"\naddress = \"10.0.0.6\"\nnetwork = \"lan\"\nvrid = 1\n[[vip]]\nname = \"x\"\naddress = \"10.0.0.7\"\nnetwork = \"lan\"\n"
        )
    };
    let vrids = |src: &str| -> Vec<u8> {
        let inv = parse(file(), src).unwrap_or_else(|d| panic!("{d}"));
        inv.site.vips.iter().map(|v| v.vrid).collect()
    };
    // explicit: v gets 254, w keeps its 1, x gets 255; from 255, x wraps past the taken 1 to 2
    assert_eq!(
        vrids(&two("name = \"t\"\nvrid_base = 254")),
        vec![254, 1, 255]
    );
    assert_eq!(
        vrids(&two("name = \"t\"\nvrid_base = 255")),
        vec![255, 1, 2]
    );
    // derived: two sites on one LAN start apart
    let a = vrids(&two("name = \"site-a\""));
    let b = vrids(&two("name = \"site-b\""));
    assert_eq!(a[0], derived_vrid_base("site-a"));
    assert_eq!(b[0], derived_vrid_base("site-b"));
    assert_ne!(a[0], b[0]);
    // out of range: an error at the key
    only_err(
        &two("name = \"t\"\nvrid_base = 0"),
        "vrid_base of [site] must be 1..=255, found 0",
        3,
        13,
    );
}

#[test]
fn more_than_255_vips_in_a_network() {
    let mut src = String::from("[site]\nname = \"t\"\n[[network]]\nname = \"lan\"\ncidr = \"10.0.0.0/16\"\n[[node]]\nname = \"lb1\"\nroles = [\"lb\"]\naddress = \"10.0.0.2\"\n");
    for i in 0..256 {
        src.push_str(&format!(
            "[[vip]]\nname = \"v{i}\"\naddress = \"10.0.{}.{}\"\nnetwork = \"lan\"\n",
            1 + i / 250,
            1 + i % 250
        ));
    }
    // 9 header lines, 4 lines per VIP: the 256th VIP's name is on line 9 + 255 * 4 + 2
    let line = 9 + 255 * 4 + 2;
    let d = fail(&src);
    let item = d
        .items
        .iter()
        .find(|i| i.message.contains("more than 255 VIPs"))
        .unwrap_or_else(|| panic!("{d}"));
    assert_eq!(
        item.message,
        "network lan has more than 255 VIPs (VRRP virtual router ids are 1..=255)"
    );
    assert_eq!(item.line_col(&src), Some((line, 8)));
    // exactly 255 is fine, and they get 1..=255
    let cut = src.rfind("[[vip]]").unwrap();
    let src255 = &src[..cut];
    let inv = parse(file(), src255).unwrap_or_else(|d| panic!("{d}"));
    let mut vrids: Vec<u8> = inv.site.vips.iter().map(|v| v.vrid).collect();
    vrids.sort_unstable();
    assert_eq!(vrids, (1..=255).collect::<Vec<u8>>());
}

// ---------------------------------------------------------------------------------------
// Services
// ---------------------------------------------------------------------------------------

fn svc(lines: &str) -> String {
    with(
        SVC,
        &format!("[[service]]\nname = \"s2\"\nvip = \"api\"\nbackend_role = \"master\"\n{lines}"),
    )
}

#[test]
fn service_unknown_vip() {
    let src = SVC.replace("vip = \"api\"", "vip = \"web\"");
    let d = only_err(&src, "unknown VIP `web` in service s1", 26, 7);
    assert_eq!(d.help.as_deref(), Some("defined VIPs: api"));
}

#[test]
fn service_port_or_range() {
    only_err(
        &svc(""),
        "service s2 has neither port nor port_range",
        31,
        8,
    );
    let d = only_err(
        &svc("port = 1\nport_range = \"2-3\"\n"),
        "service s2 sets both port and port_range; use one",
        35,
        14,
    );
    assert_eq!(
        crate::diag::line_col(&svc("port = 1\n"), d.labels[0].0.start),
        (34, 8)
    );
    only_err(
        &svc("port = 0\n"),
        "port of service s2 must be 1..=65535, found 0",
        34,
        8,
    );
    only_err(
        &svc("port = 65536\n"),
        "port of service s2 must be 1..=65535, found 65536",
        34,
        8,
    );
    only_err(
        &svc("port_range = \"30000:32767\"\n"),
        "port_range `30000:32767` must look like \"FIRST-LAST\"",
        34,
        14,
    );
    only_err(
        &svc("port_range = \"-5\"\n"),
        "must look like \"FIRST-LAST\"",
        34,
        14,
    );
    only_err(
        &svc("port_range = \"0-5\"\n"),
        "port_range `0-5`: ports must be 1..=65535",
        34,
        14,
    );
    only_err(
        &svc("port_range = \"32767-30000\"\n"),
        "port_range `32767-30000`: the first port is greater than the last",
        34,
        14,
    );
}

#[test]
fn service_backend_port() {
    let d = only_err(
        &svc("port_range = \"30000-32767\"\nbackend_port = 80\ncheck = { port = 29499 }\n"),
        "backend_port is not allowed with port_range (service s2)",
        35,
        16,
    );
    assert!(d.help.is_some());
    only_err(
        &svc("port = 80\nbackend_port = 0\n"),
        "backend_port of service s2 must be 1..=65535, found 0",
        35,
        16,
    );
    let inv = ok(&svc("port = 80\nbackend_port = 8080\n"));
    assert_eq!(inv.site.services[1].backend_port, Some(8080));
}

#[test]
fn service_without_backends() {
    only_err(
        &with(
            SVC,
            "[[service]]\nname = \"s2\"\nvip = \"api\"\nport = 1\nbackend_role = \"db\"\n",
        ),
        "service s2 has no backends: no node has role db",
        34,
        16,
    );
}

#[test]
fn service_overlapping_ports() {
    let d = only_err(
        &svc("port_range = \"8000-9000\"\ncheck = { port = 29499 }\n"),
        "ports 8000-9000 of service s2 overlap port 9000 of service s1 on VIP api",
        34,
        14,
    );
    assert_eq!(crate::diag::line_col(SVC, d.labels[0].0.start), (27, 8));
    // adjacent ranges and other VIPs are fine
    ok(&svc(
        "port_range = \"8000-8999\"\ncheck = { port = 29499 }\n",
    ));
    let other = with(SVC, "[[vip]]\nname = \"api2\"\naddress = \"10.0.0.6\"\nnetwork = \"lan\"\n[[service]]\nname = \"s2\"\nvip = \"api2\"\nport = 9000\nbackend_role = \"master\"\n");
    ok(&other);
    // a long range swallowing a later short one is found too
    let src = svc("port_range = \"1-8000\"\ncheck = { port = 29499 }\n[[service]]\nname = \"s3\"\nvip = \"api\"\nbackend_role = \"master\"\nport = 100\n");
    only_err(
        &src,
        "port 100 of service s3 overlap ports 1-8000 of service s2",
        40,
        8,
    );
}

#[test]
fn service_check_values() {
    let check = |c: &str| svc(&format!("port = 1\ncheck = {{ {c} }}\n"));
    only_err(
        &check("inter_ms = 99"),
        "check inter_ms of service s2 must be at least 100, found 99",
        35,
        22,
    );
    only_err(
        &check("rise = 0"),
        "check rise of service s2 must be 1..=1000, found 0",
        35,
        18,
    );
    only_err(
        &check("fall = 1001"),
        "check fall of service s2 must be 1..=1000, found 1001",
        35,
        18,
    );
    only_err(
        &check("port = 70000"),
        "check port of service s2 must be 1..=65535, found 70000",
        35,
        18,
    );
    only_err(
        &check("http = \"healthz\""),
        "check http `healthz` of service s2 must look like \"METHOD /path\"",
        35,
        18,
    );
    only_err(
        &check("http = \"GET /a#b\""),
        "must not contain quotes, '#', '\\' or braces",
        35,
        18,
    );
    only_err(
        &check("http = 'GET /\"x'"),
        "must not contain quotes",
        35,
        18,
    );
    only_err(
        &check("http = \"GET /x\\nHost: a\""),
        "must be printable ASCII",
        35,
        18,
    );
    // One grammar with the plan checker (crate::check::http_check): what the site may say,
    // the checker accepts, so an error always points here, never at a plugin's plan.
    only_err(
        &check("http = \"HEAD /readyz HTTP/1.1\""),
        "must look like \"METHOD /path\" with one space",
        35,
        18,
    );
    only_err(
        &check("http = \"DELETE /x\""),
        "must use one of the methods GET, HEAD, OPTIONS, POST",
        35,
        18,
    );
    only_err(
        &check("http = \"GET /{x}\""),
        "must not contain quotes, '#', '\\' or braces",
        35,
        18,
    );
    ok(&check(
        "http = \"HEAD /readyz\", inter_ms = 100, rise = 1000",
    ));
    for good in ["GET /", "OPTIONS /x?y=1", "POST /a/b-c_d.e"] {
        ok(&check(&format!("http = \"{good}\"")));
        assert_eq!(crate::check::http_check(good), Ok(()), "{good}");
    }
}

// ---------------------------------------------------------------------------------------
// Host keys, interface, user
// ---------------------------------------------------------------------------------------

#[test]
fn ssh_keys_interface_user() {
    let src = node(
        "address = \"10.0.0.31\"\nssh_authorized_keys = [\"ssh-ed25519 AAAA a@b\\nssh-rsa AAAA\", \"ssh-dss AAAA x\", \"ssh-ed25519\", \"ssh-rsa not!base64\"]\ninterface = \"eth0:1/x\"\nuser = \"Root\"\n",
    );
    err_at(
        &src,
        "ssh_authorized_keys entry contains a line break or control character",
        22,
        24,
    );
    err_at(
        &src,
        "ssh_authorized_keys entry does not start with a known key type (ssh-ed25519, ssh-rsa,",
        22,
        62,
    );
    err_at(
        &src,
        "ssh_authorized_keys entry has no key data after `ssh-ed25519`",
        22,
        80,
    );
    err_at(
        &src,
        "ssh_authorized_keys entry has key data that is not base64",
        22,
        95,
    );
    err_at(&src, "invalid interface name `eth0:1/x`", 23, 13);
    err_at(&src, "invalid user name `Root`", 24, 8);
    assert_eq!(fail(&src).items.len(), 6);
    // the same checks apply in [defaults]
    let src = MIN.replace(
        "[site]\nname = \"t\"\n",
        "[site]\nname = \"t\"\n[defaults]\ninterface = \"averyveryverylongname\"\n",
    );
    only_err(&src, "invalid interface name", 4, 13);
    for k in [
        "sk-ssh-ed25519@openssh.com AAAA",
        "ecdsa-sha2-nistp521 AAAA= c",
    ] {
        assert!(resolve::check_ssh_key(k).is_ok());
    }
}

// ---------------------------------------------------------------------------------------
// Plugins
// ---------------------------------------------------------------------------------------

#[test]
fn plugin_rules() {
    let src = with(
        MIN,
        "[[plugin]]\nsha256 = \"00\"\n[[plugin]]\npath = \"p.wasm\"\nsha256 = \"zz00000000000000000000000000000000000000000000000000000000000000\"\nsettings = 5\n",
    );
    err_at(&src, "[[plugin]] is missing required key `path`", 18, 1);
    err_at(
        &src,
        "sha256 must be 64 hexadecimal digits, found `00`",
        19,
        10,
    );
    err_at(
        &src,
        "sha256 must be 64 hexadecimal digits, found `zz00",
        22,
        10,
    );
    err_at(
        &src,
        "`settings` in [[plugin]] must be a table, found an integer",
        23,
        12,
    );
    assert_eq!(fail(&src).items.len(), 4);
    let src = with(MIN, "[[plugin]]\npath = \"p.wasm\"\n");
    only_err(&src, "[[plugin]] is missing required key `sha256`", 18, 1);
    let src = with(MIN, "[default_policy]\nx = nan\n");
    only_err(&src, "settings cannot hold nan or inf", 19, 5);
}

/// A `[[plugin]]` scope names plan fields the host knows, each checked where it is written
/// (issue 22 item 3); a good one reaches the plugin's entry.
#[test]
fn plugin_scope_paths_are_checked() {
    let entry = format!("[[plugin]]\npath = \"p.wasm\"\nsha256 = \"{:064x}\"\n", 1);
    let src = with(
        MIN,
        &format!("{entry}scope = [\"haproxy.global.maxconn\", \"keepalived.priority\"]\n"),
    );
    only_err(
        &src,
        "\"keepalived.priority\" is not a plan field path (did you mean keepalived.instances.priority?",
        21,
        36,
    );
    let src = with(
        MIN,
        &format!("{entry}scope = [\"haproxy.global.maxconn\"]\n"),
    );
    assert_eq!(
        ok(&src).plugins[0].scope.as_deref(),
        Some(&["haproxy.global.maxconn".to_string()][..])
    );
    assert_eq!(ok(&with(MIN, &entry)).plugins[0].scope, None);
}

#[test]
fn plugin_count_is_capped() {
    // Distinct components (one pinned twice is an error of its own).
    let entries = |n: usize| -> String {
        (0..n)
            .map(|i| format!("[[plugin]]\npath = \"p{i}.wasm\"\nsha256 = \"{i:064x}\"\n"))
            .collect()
    };
    // MIN has 17 lines; each entry 3: the first entry past the cap starts
    // at line 18 + 3 * MAX_PLUGINS.
    let at_cap = with(MIN, &entries(super::MAX_PLUGINS));
    assert_eq!(ok(&at_cap).plugins.len(), super::MAX_PLUGINS);
    let over = with(MIN, &entries(super::MAX_PLUGINS + 5));
    only_err(
        &over,
        "37 [[plugin]] entries; at most 32 are allowed",
        18 + 3 * super::MAX_PLUGINS,
        1,
    );
}

// ---------------------------------------------------------------------------------------
// Robustness and scale
// ---------------------------------------------------------------------------------------

#[test]
fn reports_all_errors_sorted() {
    let src = with(
        SVC,
        "[[node]]\nname = \"BAD\"\nroles = [\"worker\"]\naddress = \"x\"\n[[vip]]\nname = \"w\"\naddress = \"10.0.0.7\"\nnetwork = \"nope\"\n",
    );
    let d = fail(&src);
    let msgs: Vec<&str> = d.items.iter().map(|i| i.message.as_str()).collect();
    assert_eq!(d.items.len(), 3, "{d}");
    assert!(msgs[0].starts_with("invalid node name `BAD`"));
    assert!(msgs[1].contains("is not an IP address"));
    assert!(msgs[2].starts_with("unknown network `nope`"));
    let positions: Vec<_> = d.items.iter().map(|i| i.line_col(&src).unwrap()).collect();
    assert_eq!(positions, vec![(31, 8), (33, 11), (37, 11)]);
}

#[test]
fn too_large_file_is_refused() {
    let big = " ".repeat(MAX_SITE_FILE_BYTES + 1);
    let d = parse(file(), &big).unwrap_err();
    assert_eq!(d.items.len(), 1);
    assert!(d.items[0].message.contains("too large"), "{d}");
    assert_eq!(d.items[0].span, None);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.toml");
    std::fs::write(&path, &big).unwrap();
    assert!(load(&path).unwrap_err().items[0]
        .message
        .contains("too large"));
}

#[test]
fn deep_nesting_does_not_crash() {
    let n = 10_000;
    let arr = format!(
        "[site]\nname = \"t\"\n[default_policy]\nx = {}{}\n",
        "[".repeat(n),
        "]".repeat(n)
    );
    let d = fail(&arr);
    assert!(d.items[0].message.contains("TOML syntax error"), "{d}");
    let tbl = format!(
        "[site]\nname = \"t\"\n[default_policy]\nx = {}{}\n",
        "{ a = ".repeat(n),
        "}".repeat(n)
    );
    let d = fail(&tbl);
    assert!(d.items[0].message.contains("TOML syntax error"), "{d}");
    let dotted = format!(
        "[site]\nname = \"t\"\n[default_policy]\n{} = 1\n",
        vec!["a"; n].join(".")
    );
    fail(&dotted);
    let header = format!(
        "[site]\nname = \"t\"\n[default_policy.{}]\n",
        vec!["a"; n].join(".")
    );
    fail(&header);
    // moderately deep settings are fine and end up in the JSON
    let ok_depth = format!(
        "[site]\nname = \"t\"\n[default_policy]\nx = {}1{}\n",
        "[".repeat(30),
        "]".repeat(30)
    );
    assert!(ok(&ok_depth)
        .default_policy_settings
        .starts_with("{\"x\":[[[["));
}

#[test]
fn odd_inputs_never_panic() {
    let inputs = [
        "",
        "[[node]]\n",
        "node = 5\nvip = [1]\nsite = []\n",
        "[site]\nname = \"t\"\n[[service]]\ncheck = 3\n",
        "[site]\nname = \"t\"\n[[node]]\nroles = 1\nname = []\n",
        "[site]\nname = \"t\"\n[defaults]\nssh_authorized_keys = \"ssh-ed25519 AAAA\"\n",
        "[site]\nname = \"t\"\n[[vip]]\nholders = [\"a\"]\nmaster = \"a\"\nnopreempt = true\n",
        "[site]\nname = \"t\"\n[[network]]\nname = \"x\"\ncidr = \"::/0\"\n[[node]]\nname = \"a\"\nroles = []\naddress = \"::\"\n",
        "\u{feff}[site]\nname = \"t\"\n",
        "[site]\nname = \"t\"\n[default_policy]\nd = 1979-05-27T07:32:00Z\n",
        "[site]\r\nname = \"t\"\r\n[[node]]\r\nname = \"\u{e9}\u{e9}\"\r\n",
    ];
    for src in inputs {
        if let Err(d) = parse(file(), src) {
            let _ = d.to_string();
        }
    }
}

fn generated(n: usize) -> String {
    let mut src = String::from(
        "[site]\nname = \"big\"\n[defaults]\nssh_authorized_keys = [\"ssh-ed25519 AAAAC3Nza ops@x\"]\n[[network]]\nname = \"lan\"\ncidr = \"10.0.0.0/8\"\ngateway = \"10.0.0.1\"\n[[vip]]\nname = \"api\"\naddress = \"10.0.0.2\"\nnetwork = \"lan\"\n[[service]]\nname = \"api\"\nvip = \"api\"\nport = 9000\nbackend_role = \"master\"\nbackend_port = 6443\n",
    );
    for i in 0..n {
        let role = match i {
            0 | 1 => "lb",
            2..=4 => "master",
            _ => "worker",
        };
        src.push_str(&format!(
            "[[node]]\nname = \"n{i}\"\nroles = [\"{role}\"]\naddress = \"10.{}.{}.{}\"\n",
            1 + i / 65536,
            (i / 256) % 256,
            i % 256
        ));
    }
    src
}

#[test]
fn ten_thousand_nodes() {
    let src = generated(10_000);
    let start = std::time::Instant::now();
    let inv = ok(&src);
    let took = start.elapsed();
    assert_eq!(inv.site.nodes.len(), 10_000);
    assert_eq!(inv.node_spans.len(), 10_000);
    assert_eq!(inv.site.vips[0].holders, vec![0, 1]);
    assert_eq!(inv.site.services[0].backends, vec![2, 3, 4]);
    eprintln!(
        "10,000 nodes: {} bytes parsed and checked in {took:?}",
        src.len()
    );
    if !cfg!(debug_assertions) {
        assert!(took < std::time::Duration::from_millis(500), "{took:?}");
    }
    // many errors: capped, sorted, no blow-up
    let bad = src.replace("roles = [\"worker\"]", "roles = [\"wrker\"]");
    let d = fail(&bad);
    assert_eq!(d.items.len(), crate::diag::MAX_ITEMS + 1);
    assert!(d
        .items
        .last()
        .unwrap()
        .message
        .contains("more errors not shown"));
}

#[test]
fn node_roles_empty_or_repeated() {
    let d = only_err(
        &node("address = \"10.0.0.31\"\n").replace("roles = [\"worker\"]", "roles = []"),
        "node w1 has no roles",
        20,
        9,
    );
    assert!(d.help.unwrap().contains("controller"));
    let src = node("address = \"10.0.0.31\"\n").replace(
        "roles = [\"worker\"]",
        "roles = [\"worker\", \"db\", \"worker\"]",
    );
    only_err(&src, "role worker is listed twice for node w1", 20, 26);
}

// ---------------------------------------------------------------------------------------
// AWS: how a VIP moves
// ---------------------------------------------------------------------------------------

/// Two AWS load balancers in one subnet; the VIP's `aws` table is appended (line 26 on).
const AWS: &str = r#"[site]
name = "t"

[defaults]
platform = "aws"
interface = "ens5"

[[network]]
name = "a"
cidr = "10.0.1.0/24"

[[node]]
name = "lb1"
roles = ["lb"]
address = "10.0.1.11"

[[node]]
name = "lb2"
roles = ["lb"]
address = "10.0.1.12"

[[vip]]
name = "api"
address = "10.0.1.100"
network = "a"
"#;

#[test]
fn aws_vip_methods_resolve() {
    let inv = ok(&with(AWS, "aws = { method = \"secondary-ip\" }\n"));
    assert_eq!(inv.site.vips[0].aws, Some(AwsVipMove::SecondaryIp));
    let inv = ok(&with(
        AWS,
        "[vip.aws]\nmethod = \"elastic-ip\"\nallocation_id = \"eipalloc-0123456789abcdef0\"\n",
    ));
    assert_eq!(
        inv.site.vips[0].aws,
        Some(AwsVipMove::ElasticIp("eipalloc-0123456789abcdef0".into()))
    );
    let inv = ok(&with(
        AWS,
        "aws = { method = \"route-table\", route_tables = [\"rtb-0a1b2c3d\", \"rtb-0123456789abcdef0\"] }\n",
    ));
    assert_eq!(
        inv.site.vips[0].aws,
        Some(AwsVipMove::RouteTable(vec![
            "rtb-0a1b2c3d".into(),
            "rtb-0123456789abcdef0".into()
        ]))
    );
    // Not on AWS: none.
    assert_eq!(ok(EXAMPLE).site.vips[0].aws, None);
}

#[test]
fn aws_vip_needs_a_method() {
    let d = only_err(
        AWS,
        "VIP api is held by AWS nodes lb1, lb2 but says not how it moves",
        23,
        8,
    );
    assert!(
        d.help.as_deref().unwrap_or("").contains("secondary-ip"),
        "{d:?}"
    );
}

#[test]
fn aws_table_refused_off_aws() {
    let src = with(
        &AWS.replace("platform = \"aws\"", "platform = \"ubuntu\""),
        "aws = { method = \"secondary-ip\" }\n",
    );
    only_err(
        &src,
        "VIP api sets aws, but none of its holders has platform aws",
        26,
        7,
    );
}

#[test]
fn aws_mixed_holders_refused() {
    let src = with(
        &AWS.replace(
            "address = \"10.0.1.12\"",
            "address = \"10.0.1.12\"\nplatform = \"ubuntu\"",
        ),
        "aws = { method = \"secondary-ip\" }\n",
    );
    only_err(
        &src,
        "VIP api mixes AWS holders (lb1) with holders on other platforms (lb2)",
        24,
        8,
    );
}

#[test]
fn aws_ids_checked_by_shape() {
    only_err(
        &with(
            AWS,
            "aws = { method = \"elastic-ip\", allocation_id = \"eipalloc-XYZ\" }\n",
        ),
        "allocation_id `eipalloc-XYZ` of VIP api is not an Elastic IP allocation id",
        26,
        48,
    );
    only_err(
        &with(AWS, "aws = { method = \"elastic-ip\" }\n"),
        "method elastic-ip of VIP api needs allocation_id",
        26,
        18,
    );
    err_at(
        &with(
            AWS,
            "aws = { method = \"route-table\", route_tables = [\"rtb-1\", \"subnet-0a1b2c3d\"] }\n",
        ),
        "`rtb-1` in route_tables of VIP api is not a route table id",
        26,
        49,
    );
    let d = fail(&with(
        AWS,
        "aws = { method = \"route-table\", route_tables = [\"rtb-1\", \"subnet-0a1b2c3d\"] }\n",
    ));
    assert_eq!(d.items.len(), 2, "{d}");
    only_err(
        &with(AWS, "aws = { method = \"route-table\", route_tables = [\"rtb-0a1b2c3d\", \"rtb-0a1b2c3d\"] }\n"),
        "route table rtb-0a1b2c3d is listed twice for VIP api",
        26,
        65,
    );
    only_err(
        &with(
            AWS,
            "aws = { method = \"route-table\", route_tables = [] }\n",
        ),
        "route_tables of VIP api is empty",
        26,
        48,
    );
    only_err(
        &with(
            AWS,
            "aws = { method = \"secondary-ip\", route_tables = [\"rtb-0a1b2c3d\"] }\n",
        ),
        "route_tables does not apply to method secondary-ip (VIP api)",
        26,
        49,
    );
    only_err(
        &with(AWS, "aws = { method = \"floating\" }\n"),
        "unknown AWS move method `floating`; expected one of: secondary-ip, elastic-ip, route-table",
        26,
        18,
    );
    only_err(
        &with(AWS, "aws = { method = \"secondary-ip\", eip = \"x\" }\n"),
        "unknown key `eip` in `aws` in [[vip]]",
        26,
        34,
    );
}

#[test]
fn aws_route_table_holders_span_subnets() {
    // Cross-AZ: each holder in its own subnet, the VIP on an overlay network of its own.
    let src = AWS
        .replace(
            "[[node]]\nname = \"lb2\"",
            "[[network]]\nname = \"b\"\ncidr = \"10.0.2.0/24\"\n\n[[network]]\nname = \"overlay\"\ncidr = \"172.31.255.0/24\"\n\n[[node]]\nname = \"lb2\"",
        )
        .replace("address = \"10.0.1.12\"", "address = \"10.0.2.12\"")
        .replace(
            "address = \"10.0.1.100\"\nnetwork = \"a\"",
            "address = \"172.31.255.10\"\nnetwork = \"overlay\"\nholders = [\"lb1\", \"lb2\"]",
        );
    let inv = ok(&with(
        &src,
        "aws = { method = \"route-table\", route_tables = [\"rtb-0a1b2c3d\"] }\n",
    ));
    assert_eq!(inv.site.vips[0].holders, vec![0, 1]);
    assert_eq!(inv.site.nodes[1].network, 1);
    // The same holders with a secondary IP: refused (a secondary IP stays in one subnet).
    let d = fail(&with(&src, "aws = { method = \"secondary-ip\" }\n"));
    assert!(
        d.to_string()
            .contains("node lb1 in holders of VIP api is not on network overlay"),
        "{d}"
    );
}

// ---------------------------------------------------------------------------------------
// Stages
// ---------------------------------------------------------------------------------------

fn staged(src: &str, stage: &str) -> Result<Inventory, Diagnostics> {
    parse_stage(file(), src, Some(stage))
}

/// Asserts an error containing `msg` at `line:col` when `stage` is applied.
fn stage_err_at(src: &str, stage: &str, msg: &str, line: usize, col: usize) {
    let d = match staged(src, stage) {
        Ok(_) => panic!("expected errors for stage {stage}:\n{src}"),
        Err(d) => d,
    };
    let text = d.to_string();
    let Some(item) = d.items.iter().find(|i| i.message.contains(msg)) else {
        panic!("no error containing {msg:?}; got:\n{text}");
    };
    assert_eq!(
        item.line_col(src),
        Some((line, col)),
        "wrong position for {msg:?}:\n{text}"
    );
}

/// MIN (a laptop: raspios, no VIP) plus production overlays from line 18 on.
const STAGES: &str = r#"[stage.production.defaults]
platform = "aws"
[stage.production.network.lan]
cidr = "10.9.0.0/24"
gateway = "10.9.0.1"
[stage.production.node.lb1]
address = "10.9.0.11"
interface = "ens5"
[stage.production.node.m1]
address = "10.9.0.21"
[stage.staging.node.lb1]
address = "10.0.0.99"
"#;

#[test]
fn stages_overlay_the_base() {
    let src = format!("{MIN}[defaults]\nplatform = \"raspios\"\n{STAGES}");
    // Without --stage: the base, and no stage name.
    let base = ok(&src);
    assert_eq!(base.site.nodes[0].address, "10.0.0.11");
    assert_eq!(base.site.stage, "");
    let prod = staged(&src, "production").unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(prod.site.stage, "production");
    assert_eq!(prod.site.networks[0].cidr, "10.9.0.0/24");
    assert_eq!(prod.site.nodes[0].address, "10.9.0.11");
    assert_eq!(prod.site.nodes[0].interface, "ens5");
    assert_eq!(prod.site.nodes[0].platform, Platform::Aws);
    assert_eq!(prod.site.nodes[1].address, "10.9.0.21");
    let staging = staged(&src, "staging").unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(staging.site.nodes[0].address, "10.0.0.99");
    assert_eq!(staging.site.networks[0].cidr, "10.0.0.0/24");
}

#[test]
fn stage_values_are_checked_at_the_overlay_line() {
    // 10.0.0.99 outside the production network: reported at the overlay's address.
    let src = format!("{MIN}[stage.production.node.lb1]\naddress = \"10.1.0.5\"\n");
    stage_err_at(
        &src,
        "production",
        "address 10.1.0.5 of node lb1 is in no [[network]]",
        19,
        11,
    );
}

#[test]
fn unknown_stage_and_unknown_overlay_targets() {
    let src = format!("{MIN}[stage.production.node.lb1]\naddress = \"10.0.0.12\"\n");
    stage_err_at(&src, "prod", "unknown stage `prod`", 18, 8);
    let d = staged(&src, "prod").expect_err("unknown stage");
    assert!(
        d.to_string()
            .contains("stages defined in this file: production"),
        "{d}"
    );
    let d = staged(MIN, "prod").expect_err("no stages");
    assert!(
        d.to_string()
            .contains("unknown stage `prod`: this site file defines no stages"),
        "{d}"
    );

    let src = format!("{MIN}[stage.production.node.lb9]\naddress = \"10.0.0.12\"\n");
    // Reported whichever stage is picked, and without one.
    err_at(
        &src,
        "stage production overlays [[node]] `lb9`, which the base does not define",
        18,
        24,
    );
    stage_err_at(
        &src,
        "production",
        "stage production overlays [[node]] `lb9`, which the base does not define",
        18,
        24,
    );
    let src = format!("{MIN}[stage.production.node.lb1]\nadress = \"10.0.0.12\"\n");
    stage_err_at(
        &src,
        "production",
        "stage production overlays unknown key `adress` of [[node]] `lb1`",
        19,
        1,
    );
    let src = format!("{MIN}[stage.production.node.lb1]\nname = \"lb3\"\n");
    stage_err_at(
        &src,
        "production",
        "stage production cannot rename [[node]] `lb1`",
        19,
        1,
    );
    let src = format!("{MIN}[stage.production.site]\nname = \"x\"\n");
    stage_err_at(
        &src,
        "production",
        "stage production cannot overlay `site`",
        18,
        19,
    );
    let src = format!("{MIN}[stage.production.defaults]\nplatform = \"aws\"\n");
    stage_err_at(
        &src,
        "production",
        "stage production overlays [defaults], which the base does not have",
        18,
        19,
    );
    // An unknown word in an overlay is reported where the overlay says it.
    let src = format!("{MIN}[defaults]\nplatform = \"raspios\"\n[stage.production.defaults]\nplatform = \"ec2\"\n");
    stage_err_at(&src, "production", "unknown platform `ec2`", 21, 12);
}

#[test]
fn stage_overlays_vip_aws_and_plugin_settings() {
    let src = format!(
        "{AWS}aws = {{ method = \"secondary-ip\" }}\n\
         [stage.xaz.vip.api]\n\
         aws = {{ method = \"route-table\", route_tables = [\"rtb-0a1b2c3d\"] }}\n\
         [[plugin]]\npath = \"p.wasm\"\nsha256 = \"{}\"\nsettings = {{ a = 1, b = 2 }}\n\
         [stage.xaz.plugin.\"p.wasm\".settings]\nb = 3\n",
        "0".repeat(64)
    );
    let inv = staged(&src, "xaz").unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(
        inv.site.vips[0].aws,
        Some(AwsVipMove::RouteTable(vec!["rtb-0a1b2c3d".into()]))
    );
    let settings: serde_json::Value =
        serde_json::from_str(&inv.plugins[0].settings_json).expect("json");
    assert_eq!(settings, serde_json::json!({"a": 1, "b": 3}));
}

// ---------------------------------------------------------------------------------------
// Passwords: hashes only
// ---------------------------------------------------------------------------------------

const SHA512: &str = "$6$saltsalt$8iYtNHxjWRl.NF6oNZ5tF.iKFlQREaXBLlSmZKP6dy9l5z3vsooWNW0/GZ6Nej73/TFug6pIPSqbJoCT6dfnj.";
const YESCRYPT: &str = "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7";

#[test]
fn password_hash_shapes() {
    for good in [
        SHA512,
        YESCRYPT,
        "$6$rounds=10000$saltsalt$8iYtNHxjWRl.NF6oNZ5tF.iKFlQREaXBLlSmZKP6dy9l5z3vsooWNW0/GZ6Nej73/TFug6pIPSqbJoCT6dfnj.",
    ] {
        assert_eq!(resolve::check_password_hash(good), Ok(()), "{good}");
    }
    for bad in [
        "",
        "hunter2",
        "$1$salt$abc",                            // MD5: too weak
        &SHA512[..SHA512.len() - 1],              // truncated
        &format!("{SHA512}x"),                    // too long
        &SHA512.replace("saltsalt", "salt salt"), // space in the salt
        &SHA512.replace("$6$", "$6$rounds=$"),    // empty rounds
        &YESCRYPT.replace("$y$j9T$", "$y$$"),     // no parameters
        &format!("{YESCRYPT}\nroot::0:0"),        // a line break
    ] {
        assert!(resolve::check_password_hash(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn password_hash_from_defaults_or_node() {
    let src = MIN
        .replacen(
            "[[network]]",
            &format!("[defaults]\npassword_hash = \"{SHA512}\"\n\n[[network]]"),
            1,
        )
        .replacen(
            "address = \"10.0.0.21\"",
            &format!("address = \"10.0.0.21\"\npassword_hash = '{YESCRYPT}'"),
            1,
        );
    let inv = ok(&src);
    assert_eq!(inv.node_extras[0].password_hash.as_deref(), Some(SHA512));
    assert_eq!(inv.node_extras[1].password_hash.as_deref(), Some(YESCRYPT));
    assert!(inv.warnings.is_empty());
    assert_eq!(ok(MIN).node_extras[0].password_hash, None);
}

#[test]
fn bad_password_hash_is_an_error() {
    let src = with(MIN, "password_hash = \"hunter2\"\n");
    let d = only_err(&src, "password_hash is not a crypt(3)", 18, 17);
    assert!(d.help.unwrap().contains("mkpasswd"));
    let src = with(MIN, "password_hash = 5\n");
    only_err(&src, "`password_hash` in [[node]] must be a string", 18, 17);
}

#[test]
fn plaintext_password_warns_and_is_dropped() {
    let src = MIN.replacen(
        "[[network]]",
        "[defaults]\npassword = \"hunter2\"\n\n[[network]]",
        1,
    ) + "password = { nested = \"hunter3\" }\n";
    let inv = ok(&src);
    let lines = inv.warning_lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("site.toml:5:1: warning: plaintext `password` is ignored"),
        "{lines:?}"
    );
    assert!(lines[0].contains("mkpasswd"), "{lines:?}");
    assert!(
        lines[1].starts_with("site.toml:21:1: warning:"),
        "{lines:?}"
    );
    // The value is kept nowhere.
    assert!(inv.node_extras.iter().all(|e| e.password_hash.is_none()));
    let dump = format!("{:?}{:?}", inv.site, inv.node_extras);
    assert!(!dump.contains("hunter"), "{dump}");
    assert!(!inv.default_policy_settings.contains("hunter"));
}

/// A site switched to aws that keeps eth0 (given, or the default) is warned
/// once per line that decided it, naming the nodes; ens5 is not.
#[test]
fn aws_on_eth0_warns_once_per_line() {
    let src = MIN.replacen(
        "[[network]]",
        "[defaults]\nplatform = \"aws\"\n\n[[network]]",
        1,
    );
    let inv = ok(&src);
    let lines = inv.warning_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(
            "site.toml:5:12: warning: platform aws with interface eth0 (nodes lb1, m1"
        ),
        "{lines:?}"
    );
    assert!(lines[0].contains("interface = \"ens5\""), "{lines:?}");
    let given = src.replacen(
        "platform = \"aws\"\n",
        "platform = \"aws\"\ninterface = \"eth0\"\n",
        1,
    );
    let lines = ok(&given).warning_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("site.toml:6:13: warning:"),
        "{lines:?}"
    );
    let ens5 = src.replacen(
        "platform = \"aws\"\n",
        "platform = \"aws\"\ninterface = \"ens5\"\n",
        1,
    );
    assert!(ok(&ens5).warning_lines().is_empty());
}
