//! `haseed schema`: the site file's JSON Schema (Draft 4, what taplo and Even Better TOML
//! read) and its reference page (`docs/inventory.md`), both made from what the reader itself
//! asks for.
//!
//! The keys, their types, which are required and the words a choice takes are not written
//! here: the reader runs once over a document that has every table, with recording on
//! (`Cx::record`), and reports every key it asks for and how (`KeyRead`). What the reader
//! cannot say (a description, a default, a range) comes from [`DOCS`]; a test fails when a key
//! the reader reads has no entry there, or an entry names a key it does not read.

use serde_json::{json, Map, Value};

use super::read::{self, Cx, KeyKind, KeyRead};

/// (table as messages name it, key, description, default, range).
type Doc = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<(i64, i64)>,
);

/// What the reader cannot tell: a description, a default and a range for every key.
pub(crate) const DOCS: &[Doc] = &[
    ("the site file", "site", "The site: its name, stage and VRID start.", None, None),
    ("the site file", "defaults", "Host keys every node inherits unless it sets them.", None, None),
    ("the site file", "network", "The networks (L2 segments) nodes and VIPs live on.", None, None),
    ("the site file", "vip", "Virtual IPs: addresses that move between their holders (VRRP, or the EC2 API on AWS).", None, None),
    ("the site file", "service", "What each VIP serves: a frontend on the VIP, balanced over the nodes of one role.", None, None),
    ("the site file", "node", "The machines.", None, None),
    ("the site file", "plugin", "Policy plugins (WebAssembly components), run in order after the built-in default policy.", None, None),
    ("the site file", "default_policy", "Settings of the built-in default policy, checked by the policy itself (its keys: docs/inventory.md, `[default_policy]`).", None, None),
    ("[site]", "name", "The site's name: output directory names, bundle name, instance ids.", None, None),
    ("[site]", "stage", "The stage this file describes when no --stage is given (stages are [stage.NAME] overlays).", None, None),
    ("[site]", "vrid_base", "The VRRP virtual router id of each network's first VIP without a vrid; the next ones count up (255 wraps to 1). Sites sharing a LAN should use ranges that do not overlap.", Some("derived from the site's name (1 + FNV-1a % 255)"), Some((1, 255))),
    ("[defaults]", "platform", "What the node runs: its image and seed format.", Some("raspios"), None),
    ("[defaults]", "interface", "The network interface the node's address and VIPs are on (EC2 Nitro: ens5).", Some("eth0"), None),
    ("[defaults]", "user", "The login user created on the node.", Some("pi"), None),
    ("[defaults]", "ssh_authorized_keys", "OpenSSH public keys of the user. A node without any is an error; [] opts out (console-only) with a warning.", None, None),
    ("[defaults]", "password_hash", "A crypt(3) hash ($6$ or $y$, e.g. from mkpasswd -m sha-512) for console and sudo; without it password login stays locked.", None, None),
    ("[defaults]", "password", "Not supported: a plaintext password is ignored with a warning and never written out. Use password_hash.", None, None),
    ("[[network]]", "name", "The network's name.", None, None),
    ("[[network]]", "cidr", "ADDRESS/PREFIX with zero host bits, e.g. \"192.168.3.0/24\".", None, None),
    ("[[network]]", "gateway", "The default gateway, inside the network.", None, None),
    ("[[network]]", "dns", "DNS servers (IP addresses).", None, None),
    ("[[network]]", "ntp", "NTP servers (IP addresses or host names).", None, None),
    ("[[vip]]", "name", "The VIP's name.", None, None),
    ("[[vip]]", "address", "The virtual address, inside its network (route-table VIPs on AWS: outside every subnet).", None, None),
    ("[[vip]]", "network", "The network the VIP lives on.", None, None),
    ("[[vip]]", "holders", "The nodes that may hold the VIP.", Some("the nodes with role lb on its network"), None),
    ("[[vip]]", "vrid", "The VRRP virtual router id, unique per network.", Some("assigned from [site] vrid_base in file order"), Some((1, 255))),
    ("[[vip]]", "master", "A holder that starts MASTER and takes the VIP back (preempts) when it returns.", None, None),
    ("[[vip]]", "nopreempt", "Holders start BACKUP and keep the VIP where it is (an error together with master).", Some("true"), None),
    ("[[vip]]", "max_outage_ms", "The longest client outage haseed lab accepts for this VIP.", Some("100"), Some((1, 60_000))),
    ("[[vip]]", "aws", "How the VIP moves on AWS (platform aws).", None, None),
    ("`aws` in [[vip]]", "method", "secondary-ip: the VIP is a secondary address of the holder's ENI; elastic-ip: that, plus an Elastic IP associated with it; route-table: a route to the holder's ENI (the VIP outside every subnet).", None, None),
    ("`aws` in [[vip]]", "allocation_id", "The Elastic IP's allocation id (eipalloc-...), for method elastic-ip.", None, None),
    ("`aws` in [[vip]]", "route_tables", "The route tables (rtb-...) to update, for method route-table.", None, None),
    ("[[service]]", "name", "The service's name (haproxy frontend and backend).", None, None),
    ("[[service]]", "vip", "The VIP the frontend is on.", None, None),
    ("[[service]]", "port", "The frontend's port (or give port_range).", None, Some((1, 65535))),
    ("[[service]]", "port_range", "A frontend port range, \"FIRST-LAST\", e.g. \"30000-32767\"; each backend gets the port the client used.", None, None),
    ("[[service]]", "backend_role", "The role whose nodes are the backends.", None, None),
    ("[[service]]", "backend_port", "The backends' port (not with port_range).", Some("port"), Some((1, 65535))),
    ("[[service]]", "mode", "haproxy mode.", Some("tcp"), None),
    ("[[service]]", "balance", "haproxy balance algorithm.", Some("the default policy's choice for the backend role"), None),
    ("[[service]]", "check", "Overrides of the backends' health check.", Some("the default policy's choice for the backend role"), None),
    ("[[service]]", "bind", "Where the frontend listens: any address (*) or only the VIP.", Some("any (vip when a holder is also a backend on the port)"), None),
    ("`check` in [[service]]", "inter_ms", "Milliseconds between checks.", None, Some((100, u32::MAX as i64))),
    ("`check` in [[service]]", "rise", "Good checks before a server counts as up.", None, Some((1, 1000))),
    ("`check` in [[service]]", "fall", "Failed checks before a server counts as down.", None, Some((1, 1000))),
    ("`check` in [[service]]", "port", "Check this port instead of the service port (e.g. a node health endpoint).", None, Some((1, 65535))),
    ("`check` in [[service]]", "http", "An HTTP check, \"GET /path\".", None, None),
    ("[[node]]", "name", "The node's host name (RFC 1123 label, lowercase).", None, None),
    ("[[node]]", "roles", "What the node is: lb (holds VIPs, runs haproxy and keepalived), master (Kubernetes control plane), worker, controller (OpenStack-style APIs), db (MariaDB Galera).", None, None),
    ("[[node]]", "address", "The node's static address.", None, None),
    ("[[node]]", "network", "The node's network.", Some("the [[network]] whose cidr contains the address"), None),
    ("[[node]]", "platform", "As in [defaults].", Some("[defaults] platform"), None),
    ("[[node]]", "interface", "As in [defaults].", Some("[defaults] interface"), None),
    ("[[node]]", "user", "As in [defaults].", Some("[defaults] user"), None),
    ("[[node]]", "ssh_authorized_keys", "As in [defaults].", Some("[defaults] ssh_authorized_keys"), None),
    ("[[node]]", "password_hash", "As in [defaults].", Some("[defaults] password_hash"), None),
    ("[[node]]", "password", "Not supported: ignored with a warning. Use password_hash.", None, None),
    ("[[plugin]]", "path", "The component file, relative to the site file.", None, None),
    ("[[plugin]]", "sha256", "The component's sha256 (64 hex digits): a file that does not match is refused.", None, None),
    ("[[plugin]]", "settings", "The plugin's settings, handed to it as JSON (haseed plugin inspect shows what it takes).", Some("{}"), None),
    ("[[plugin]]", "scope", "The plan fields the plugin may change, e.g. [\"keepalived.instances.priority\"] (haseed plugin add writes what the plugin declares; narrow it to restrict the plugin further). A decision that changes a field outside it fails the build.", Some("what the plugin declares"), None),
    ("[[plugin]]", "allow_repeat", "Allow this entry to pin the same component as an earlier one (it then runs twice).", Some("false"), None),
];

/// The type of a `[default_policy]` key.
#[derive(Clone, Copy)]
pub(crate) enum PolicyType {
    Boolean,
    /// An integer in this range.
    Integer(i64, i64),
    String,
    Strings,
    /// One of these words.
    Choice(&'static [&'static str]),
}

/// (key, type, default, description) of every `[default_policy]` key. The default policy reads
/// them, not the host (plugins/default-policy/src/settings.rs, where its `settings-help` says
/// the same); tests/pipeline.rs checks this list against the keys the embedded policy accepts
/// (its refusal of an unknown key lists them).
pub(crate) const DEFAULT_POLICY: &[(&str, PolicyType, &str, &str)] = &[
    ("failover", PolicyType::Boolean, "true", "Event-driven failover: haproxy.service and keepalived.service drop-ins, a keepalived track file written by haproxy's start and stop hooks, a watcher of haproxy's monitor-uri, gratuitous ARP refresh. false reproduces the reference write-ups exactly (1 s adverts, priority 100, a polling process check)."),
    ("haproxy_watch", PolicyType::Boolean, "true", "With failover: haseed-haproxy-watch.service asks haproxy's monitor-uri every 0.1 s and gives the VIP up within 1 s when haproxy hangs or has no usable server while a peer has one. false: keepalived checks the monitor-uri over HTTP every second instead (a hang seen in 2-4 s, lost backends not seen)."),
    ("check_script", PolicyType::Choice(&["pgrep", "systemctl"]), "pgrep", "How keepalived checks that haproxy runs: /usr/bin/pgrep -x haproxy, or /usr/bin/systemctl is-active --quiet haproxy."),
    ("advert_int_ms", PolicyType::Integer(10, 255_000), "1000", "VRRP advert interval in ms. Whole seconds up to 255000 use VRRPv2; anything else must be 10..40950 in steps of 10 and uses VRRPv3. A holder stalled for less than three adverts keeps the VIP."),
    ("priority", PolicyType::Integer(1, 254), "254 with failover, else 100", "keepalived priority of every VIP holder; a VIP's preferred master gets 50 more, at most 254."),
    ("kubernetes_version", PolicyType::String, "the newest minor upstream supports that haseed knows (a build warns past its end of life)", "\"MAJOR.MINOR\" of the pkgs.k8s.io repository masters and workers install kubeadm, kubelet and kubectl from (held with apt-mark hold). kubeadm's config API is v1beta4 from 1.31 on, v1beta3 before."),
    ("kubernetes_key_fingerprint", PolicyType::String, "DE15B14486CD377B9E876E1A234654DA9A296436 (isv:kubernetes OBS Project)", "The 40-hex-digit fingerprint the repository's signing key must have, checked on the node when it fetches the key at boot."),
    ("kubernetes_key", PolicyType::String, "the embedded copy (expires 2026-12-29; a build warns 60 days before)", "The ASCII-armored copy of that key a node uses when the fetch fails."),
    ("apiserver_check", PolicyType::Choice(&["readyz", "tcp", "healthz"]), "readyz with failover, else tcp", "How haproxy checks the masters' API servers. readyz: GET /readyz with check-ssl verify none, inter 1000ms rise 2 fall 2 (a server starting or in its shutdown delay is out within 2 s). tcp: a TCP connect, inter 3000ms rise 30 fall 3, as in the reference. healthz: GET /healthz over TLS at the reference's cadence."),
    ("apiserver_cert_sans", PolicyType::Strings, "none", "Extra names (IP addresses or DNS names) in kubeadm's apiServer.certSANs on every master, e.g. the public address of the API VIP's Elastic IP, which the inventory does not know."),
    ("db_balance", PolicyType::Choice(&["single-writer", "leastconn"]), "single-writer", "single-writer: the first db node takes every connection, the others are backup servers (sessions moved when it goes down and when it returns). leastconn: every db node active."),
    ("galera_sst", PolicyType::Choice(&["mariabackup", "rsync"]), "mariabackup", "Galera's state snapshot transfer. mariabackup keeps the donor serving (MariaDB's own mysql@localhost account through unix_socket); rsync blocks the donor."),
    ("galera_bootstrap", PolicyType::Choice(&["manual", "new-site"]), "manual", "Who starts a new Galera cluster when the first db node boots and no peer runs one: the operator (haseed-galera-bootstrap --new-cluster on that node, once), or the node itself when every other db node answers and none holds cluster state."),
    ("galera_cluster_name", PolicyType::String, "the site's name", "wsrep_cluster_name: letters, digits, '.', '_', '-', up to 32."),
];

/// `[default_policy]` as a JSON Schema object: the default policy refuses a key it does not know.
fn default_policy_schema(description: Option<&Value>) -> Value {
    let mut props = Map::new();
    for (key, ty, default, what) in DEFAULT_POLICY {
        let mut s = match ty {
            PolicyType::Boolean => json!({"type": "boolean"}),
            PolicyType::Integer(lo, hi) => json!({"type": "integer", "minimum": lo, "maximum": hi}),
            PolicyType::String => json!({"type": "string"}),
            PolicyType::Strings => json!({"type": "array", "items": {"type": "string"}}),
            PolicyType::Choice(words) => json!({"type": "string", "enum": words}),
        };
        s["description"] = json!(format!("{what} Default: {default}."));
        props.insert(key.to_string(), s);
    }
    let mut m = Map::new();
    if let Some(d) = description {
        m.insert("description".into(), d.clone());
    }
    m.insert("type".into(), json!("object"));
    m.insert("properties".into(), Value::Object(props));
    m.insert("additionalProperties".into(), json!(false));
    Value::Object(m)
}

/// Every key the reader asks for, by running it over a document that has every table.
pub(crate) fn recorded() -> Vec<KeyRead> {
    let doc: toml_edit::DocumentMut = "[site]\n[defaults]\n[[network]]\n[[vip]]\naws = {}\n\
        [[service]]\ncheck = {}\n[[node]]\n[[plugin]]\nsettings = {}\n[default_policy]\n"
        .parse()
        .expect("the recording document is TOML");
    let path = std::path::Path::new("schema.toml");
    let mut cx = Cx::new(path, "");
    cx.record = Some(Vec::new());
    let _ = read::read_file(&mut cx, doc.as_table());
    cx.record.take().unwrap_or_default()
}

fn doc_of(table: &str, key: &str) -> Option<&'static Doc> {
    DOCS.iter().find(|d| d.0 == table && d.1 == key)
}

/// The site file's JSON Schema, Draft 4.
pub fn json_schema() -> Value {
    let keys = recorded();
    let mut root = object_schema("the site file", &keys);
    // [stage.NAME] overlays are applied before the reader sees the file (stage.rs).
    if let Some(Value::Object(props)) = root.get_mut("properties") {
        props.insert(
            "stage".into(),
            json!({
                "description": "Stages: [stage.NAME] overlays (defaults, default_policy, and the network, vip, service, node and plugin tables by name) applied with --stage NAME.",
                "type": "object",
                "additionalProperties": {"type": "object"}
            }),
        );
    }
    if let Some(Value::Object(props)) = root.get_mut("properties") {
        let described = props
            .get("default_policy")
            .and_then(|d| d.get("description"))
            .cloned();
        props.insert(
            "default_policy".into(),
            default_policy_schema(described.as_ref()),
        );
    }
    if let Value::Object(m) = &mut root {
        m.insert(
            "$schema".into(),
            json!("http://json-schema.org/draft-04/schema#"),
        );
        m.insert("title".into(), json!("haseed site inventory"));
    }
    root
}

fn object_schema(table: &'static str, keys: &[KeyRead]) -> Value {
    let mut props = Map::new();
    let mut required = Vec::new();
    for k in keys.iter().filter(|k| k.table == table) {
        props.insert(k.key.clone(), key_schema(k, keys));
        if k.required {
            required.push(json!(k.key));
        }
    }
    let mut m = Map::new();
    m.insert("type".into(), json!("object"));
    m.insert("properties".into(), Value::Object(props));
    if !required.is_empty() {
        m.insert("required".into(), Value::Array(required));
    }
    // The reader refuses keys it does not know in every table but plugin settings.
    m.insert("additionalProperties".into(), json!(false));
    Value::Object(m)
}

fn key_schema(k: &KeyRead, keys: &[KeyRead]) -> Value {
    let mut s = match &k.kind {
        KeyKind::String => json!({"type": "string"}),
        KeyKind::Integer => json!({"type": "integer"}),
        KeyKind::Boolean => json!({"type": "boolean"}),
        KeyKind::Strings => json!({"type": "array", "items": {"type": "string"}}),
        KeyKind::Choice(words) => json!({"type": "string", "enum": words}),
        KeyKind::Words(words) => {
            json!({"type": "array", "items": {"type": "string", "enum": words}})
        }
        KeyKind::Table(what) => object_schema(what, keys),
        KeyKind::Tables(what) => json!({"type": "array", "items": object_schema(what, keys)}),
        KeyKind::Settings => json!({"type": "object"}),
        KeyKind::Ignored => json!({}),
    };
    if let (Some(doc), Value::Object(m)) = (doc_of(k.table, &k.key), &mut s) {
        let mut text = doc.2.to_string();
        if let Some(d) = doc.3 {
            text.push_str(&format!(" Default: {d}."));
        }
        m.insert("description".into(), json!(text));
        if let Some((lo, hi)) = doc.4 {
            m.insert("minimum".into(), json!(lo));
            m.insert("maximum".into(), json!(hi));
        }
    }
    s
}

/// `docs/inventory.md`: every key with its type, whether required, default, range and what it
/// is, table by table in the order the reader reads them.
pub fn markdown() -> String {
    let keys = recorded();
    let mut out = String::from(
        "# The site inventory (`site.toml`)\n\n\
         Generated by `haseed schema --format markdown` from what the reader reads; \
         `tests/pipeline.rs` fails when this page is out of date. The same source gives \
         `docs/site.schema.json` (JSON Schema Draft 4, for taplo and Even Better TOML: put \
         `#:schema PATH/site.schema.json` on the first line of a site file).\n\n\
         A stage overlay (`[stage.NAME]`) may set any key of `[defaults]` and `[default_policy]`, \
         any key but `name` of a `[[network]]`, `[[vip]]`, `[[service]]` or `[[node]]` it names, \
         and the `settings` of a `[[plugin]]` named by its path.\n",
    );
    let mut tables: Vec<&'static str> = vec!["the site file"];
    for k in &keys {
        if let KeyKind::Table(w) | KeyKind::Tables(w) = k.kind {
            if !tables.contains(&w) {
                tables.push(w);
            }
        }
    }
    for table in tables {
        let rows: Vec<&KeyRead> = keys.iter().filter(|k| k.table == table).collect();
        if rows.is_empty() {
            continue;
        }
        let title = if table == "the site file" {
            "Top level".to_string()
        } else {
            format!("`{}`", table.trim_matches('`').replace("` in ", " in "))
        };
        out.push_str(&format!(
            "\n## {title}\n\n| key | type | required | default | what |\n|---|---|---|---|---|\n"
        ));
        for k in rows {
            let ty = match &k.kind {
                KeyKind::String => "string".to_string(),
                KeyKind::Integer => match doc_of(k.table, &k.key).and_then(|d| d.4) {
                    Some((lo, hi)) => format!("integer {lo}..={hi}"),
                    None => "integer".into(),
                },
                KeyKind::Boolean => "boolean".into(),
                KeyKind::Strings => "array of strings".into(),
                KeyKind::Choice(w) => format!("one of {}", w.join(", ")),
                KeyKind::Words(w) => format!("array of: {}", w.join(", ")),
                KeyKind::Table(w) => {
                    format!("table (`{}`)", w.trim_matches('`').replace("` in ", " in "))
                }
                KeyKind::Tables(w) => format!("array of tables ({w})"),
                KeyKind::Settings if k.key == "default_policy" => {
                    "table (`[default_policy]`, below)".into()
                }
                KeyKind::Settings => "table (free-form, JSON)".into(),
                KeyKind::Ignored => "(ignored)".into(),
            };
            let doc = doc_of(k.table, &k.key);
            out.push_str(&format!(
                "| `{}` | {} | {} | {} | {} |\n",
                k.key,
                ty,
                if k.required { "yes" } else { "" },
                doc.and_then(|d| d.3).unwrap_or(""),
                doc.map_or("", |d| d.2).replace('|', "\\|")
            ));
        }
    }
    out.push_str(
        "\n## `[default_policy]`\n\n\
         Read by the built-in default policy, not the site reader: every key is optional, and an \
         unknown key is an error that lists these.\n\n\
         | key | type | default | what |\n|---|---|---|---|\n",
    );
    for (key, ty, default, what) in DEFAULT_POLICY {
        let ty = match ty {
            PolicyType::Boolean => "boolean".to_string(),
            PolicyType::Integer(lo, hi) => format!("integer {lo}..={hi}"),
            PolicyType::String => "string".into(),
            PolicyType::Strings => "array of strings".into(),
            PolicyType::Choice(words) => format!("one of {}", words.join(", ")),
        };
        out.push_str(&format!(
            "| `{key}` | {ty} | {} | {} |\n",
            default.replace('|', "\\|"),
            what.replace('|', "\\|")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reader and the descriptions name exactly the same keys.
    #[test]
    fn every_key_read_is_documented_and_every_documented_key_is_read() {
        let keys = recorded();
        let missing: Vec<String> = keys
            .iter()
            .filter(|k| doc_of(k.table, &k.key).is_none())
            .map(|k| format!("{} {}", k.table, k.key))
            .collect();
        assert!(missing.is_empty(), "read but not documented: {missing:?}");
        let stale: Vec<String> = DOCS
            .iter()
            .filter(|d| !keys.iter().any(|k| k.table == d.0 && k.key == d.1))
            .map(|d| format!("{} {}", d.0, d.1))
            .collect();
        assert!(stale.is_empty(), "documented but never read: {stale:?}");
        // The recording saw the nested tables and the choices.
        assert!(keys
            .iter()
            .any(|k| k.table == "`check` in [[service]]" && k.key == "rise"));
        assert!(
            keys.iter()
                .any(|k| k.key == "roles"
                    && matches!(&k.kind, KeyKind::Words(w) if w.contains(&"lb")))
        );
    }

    #[test]
    fn the_schema_says_what_the_reader_refuses() {
        let s = json_schema();
        assert_eq!(s["$schema"], "http://json-schema.org/draft-04/schema#");
        let vip = &s["properties"]["vip"]["items"];
        assert_eq!(vip["additionalProperties"], false);
        assert_eq!(vip["properties"]["vrid"]["maximum"], 255);
        assert!(vip["required"]
            .as_array()
            .expect("required")
            .contains(&json!("address")));
        assert_eq!(
            s["properties"]["service"]["items"]["properties"]["mode"]["enum"],
            json!(["tcp", "http"])
        );
        // Settings are the plugin's business.
        assert_eq!(
            s["properties"]["plugin"]["items"]["properties"]["settings"]["type"],
            "object"
        );
        // [default_policy]: the policy's own keys, and nothing else (it refuses the rest).
        let policy = &s["properties"]["default_policy"];
        assert_eq!(policy["additionalProperties"], false);
        assert_eq!(
            policy["properties"]["check_script"]["enum"],
            json!(["pgrep", "systemctl"])
        );
        assert_eq!(policy["properties"]["priority"]["maximum"], 254);
        assert!(policy["description"]
            .as_str()
            .expect("description")
            .contains("default policy"));
    }
}
