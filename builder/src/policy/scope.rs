//! A plugin's change scope (issue 22 item 3): the plan fields it may change.
//!
//! A scope is a list of paths of `node-plan` field names as the contract spells them
//! (kebab-case), joined by dots and crossing a list without an index:
//! `keepalived.instances.priority`, `haproxy.backends.servers.weight`. A path grants
//! everything below it. The plugin declares its scope in `info()` (contract 0.3.0); the
//! site may narrow it in the plugin's `[[plugin]]` entry (`scope = [...]`, which
//! `haseed plugin add` writes from the declaration, next to the sha256 that pins the
//! component). A change must be granted by every scope given.
//!
//! The host enforces it as a diff of the plan the plugin returned against the plan it was
//! handed ([`changed`]): equal sections are skipped by comparing the typed values, only a
//! section that differs is walked. Lists of records are matched by their `name` (`path` for
//! files, `key` for sysctls): when the sequence of names differs (an element added,
//! removed, renamed or moved) the list's own path changed; otherwise the elements are
//! compared field by field. Any other difference (a scalar, an option set or cleared, a
//! list of strings) is a change of that field's path.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use serde::Serialize;
use serde_json::Value;

use crate::contract::{
    AptSource, Backend, File, Frontend, HaproxyConfig, HaproxyDefaults, HaproxyGlobal,
    KeepalivedConfig, NodePlan, ProxyMode, Server, ServerCheck, Sysctl, VrrpInstance, VrrpScript,
    VrrpState, VrrpTrackFile,
};

/// Always granted: messages for the user, not configuration.
pub const ALWAYS_GRANTED: &str = "warnings";

/// Every path a scope may name, sorted.
pub fn known_paths() -> &'static BTreeSet<String> {
    static PATHS: OnceLock<BTreeSet<String>> = OnceLock::new();
    PATHS.get_or_init(|| {
        let mut out = BTreeSet::new();
        let full = serde_json::to_value(full_plan()).expect("a plan serialises");
        collect_paths(&full, "", &mut out);
        out
    })
}

/// Why `paths` is not a scope (an unknown or malformed path), naming the first bad one and
/// the known paths it may have meant.
pub fn check(paths: &[String]) -> Result<(), String> {
    let known = known_paths();
    for path in paths {
        if known.contains(path) {
            continue;
        }
        // "keepalived.priority" most likely meant a known path ending the same way.
        let last = path.rsplit('.').next().unwrap_or(path);
        let near: Vec<&str> = known
            .iter()
            .filter(|k| k.rsplit('.').next() == Some(last))
            .map(String::as_str)
            .take(4)
            .collect();
        let hint = if near.is_empty() {
            let top: Vec<&str> = known
                .iter()
                .filter(|k| !k.contains('.'))
                .map(String::as_str)
                .collect();
            format!("the plan's fields are {}", top.join(", "))
        } else {
            format!("did you mean {}?", near.join(" or "))
        };
        return Err(format!(
            "{:?} is not a plan field path ({hint}; paths join node-plan's field names with \
             dots, lists without an index)",
            path
        ));
    }
    Ok(())
}

/// Whether `scope` lets a plugin change `path`.
pub fn covers(scope: &[String], path: &str) -> bool {
    path == ALWAYS_GRANTED
        || scope.iter().any(|granted| {
            path == granted
                || (path.starts_with(granted.as_str())
                    && path.as_bytes().get(granted.len()) == Some(&b'.'))
        })
}

/// Whether `scope` grants every field of a plan (then nothing needs comparing).
pub fn covers_everything(scope: &[String]) -> bool {
    known_paths()
        .iter()
        .filter(|p| !p.contains('.'))
        .all(|top| covers(scope, top))
}

/// The paths of the fields that differ between `before` and `after`, [`ALWAYS_GRANTED`]
/// left out.
pub fn changed(before: &NodePlan, after: &NodePlan) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if before == after {
        return out;
    }
    // Destructured, so a field added to the contract cannot be forgotten here.
    let NodePlan {
        hostname,
        haproxy,
        keepalived,
        packages,
        apt_sources,
        sysctls,
        kernel_cmdline,
        files,
        services,
        warnings: _,
    } = before;
    section(hostname, &after.hostname, "hostname", &mut out);
    section(haproxy, &after.haproxy, "haproxy", &mut out);
    section(keepalived, &after.keepalived, "keepalived", &mut out);
    section(packages, &after.packages, "packages", &mut out);
    section(apt_sources, &after.apt_sources, "apt-sources", &mut out);
    section(sysctls, &after.sysctls, "sysctls", &mut out);
    section(
        kernel_cmdline,
        &after.kernel_cmdline,
        "kernel-cmdline",
        &mut out,
    );
    section(files, &after.files, "files", &mut out);
    section(services, &after.services, "services", &mut out);
    out
}

fn section<T: Serialize + PartialEq>(
    before: &T,
    after: &T,
    path: &str,
    out: &mut BTreeSet<String>,
) {
    if before == after {
        return;
    }
    match (serde_json::to_value(before), serde_json::to_value(after)) {
        (Ok(b), Ok(a)) => diff(&b, &a, path, out),
        // Not reachable for the generated types; a difference is still a change.
        _ => {
            out.insert(path.to_string());
        }
    }
}

fn diff(before: &Value, after: &Value, path: &str, out: &mut BTreeSet<String>) {
    if before == after {
        return;
    }
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            for (key, bv) in b {
                diff(
                    bv,
                    a.get(key).unwrap_or(&Value::Null),
                    &join(path, key),
                    out,
                );
            }
            for (key, av) in a.iter().filter(|(k, _)| !b.contains_key(*k)) {
                diff(&Value::Null, av, &join(path, key), out);
            }
        }
        (Value::Array(b), Value::Array(a)) => match (identities(b), identities(a)) {
            (Some(bk), Some(ak)) if bk == ak => {
                for (bv, av) in b.iter().zip(a) {
                    diff(bv, av, path, out);
                }
            }
            _ => {
                out.insert(path.to_string());
            }
        },
        _ => {
            out.insert(path.to_string());
        }
    }
}

/// The names of a list of records, in order; none for a list of anything else.
fn identities(items: &[Value]) -> Option<Vec<&Value>> {
    items
        .iter()
        .map(|item| {
            let record = item.as_object()?;
            ["name", "path", "key"].iter().find_map(|k| record.get(*k))
        })
        .collect()
}

fn join(path: &str, key: &str) -> String {
    let key = key.replace('_', "-");
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

fn collect_paths(value: &Value, path: &str, out: &mut BTreeSet<String>) {
    if !path.is_empty() {
        out.insert(path.to_string());
    }
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                collect_paths(child, &join(path, key), out);
            }
        }
        Value::Array(items) => {
            for item in items {
                collect_paths(item, path, out);
            }
        }
        _ => {}
    }
}

/// A plan with every option set and one element in every list, so that serialising it
/// reaches every field. Written out in full: a field the contract adds fails to compile
/// here, and the test below compares the result with the WIT itself.
fn full_plan() -> NodePlan {
    let command = || vec!["/bin/true".to_string()];
    NodePlan {
        hostname: "n".into(),
        haproxy: Some(HaproxyConfig {
            global: HaproxyGlobal {
                maxconn: Some(1),
                stats_socket: true,
            },
            defaults: HaproxyDefaults {
                mode: ProxyMode::Tcp,
                retries: 1,
                timeout_connect_ms: 1,
                timeout_client_ms: 1,
                timeout_server_ms: 1,
                timeout_check_ms: Some(1),
                options: vec!["tcplog".into()],
            },
            frontends: vec![Frontend {
                name: "f".into(),
                bind_address: Some("10.0.0.1".into()),
                port_first: 1,
                port_last: 1,
                mode: ProxyMode::Http,
                backend: "b".into(),
                options: vec!["tcplog".into()],
                monitor_uri: Some("/".into()),
            }],
            backends: vec![Backend {
                name: "b".into(),
                mode: ProxyMode::Tcp,
                balance: crate::contract::Balance::Roundrobin,
                options: vec!["redispatch".into()],
                http_check: Some("GET /".into()),
                servers: vec![Server {
                    name: "s".into(),
                    address: "10.0.0.2".into(),
                    port: Some(1),
                    check: Some(ServerCheck {
                        inter_ms: 1,
                        rise: 1,
                        fall: 1,
                        port: Some(1),
                        ssl: false,
                    }),
                    backup: false,
                    weight: Some(1),
                }],
            }],
        }),
        keepalived: Some(KeepalivedConfig {
            router_id: "r".into(),
            script_user: "u".into(),
            scripts: vec![VrrpScript {
                name: "s".into(),
                command: command(),
                interval_s: 1,
                timeout_s: Some(1),
                rise: 1,
                fall: 1,
                weight: 0,
            }],
            track_files: vec![VrrpTrackFile {
                name: "t".into(),
                path: "/t".into(),
                weight: 0,
                init_value: Some(0),
            }],
            instances: vec![VrrpInstance {
                name: "i".into(),
                state: VrrpState::Backup,
                interface: "eth0".into(),
                virtual_router_id: 1,
                priority: 1,
                nopreempt: false,
                advert_int_ms: 1000,
                vrrp_version: 3,
                unicast_src: Some("10.0.0.1".into()),
                unicast_peers: vec!["10.0.0.2".into()],
                addresses: vec!["10.0.0.3/24".into()],
                track_scripts: vec!["s".into()],
                track_files: vec!["t".into()],
                notify_master: Some(command()),
                notify_backup: Some(command()),
                notify_fault: Some(command()),
                garp_master_refresh_s: Some(1),
            }],
        }),
        packages: vec!["p".into()],
        apt_sources: vec![AptSource {
            name: "a".into(),
            source: "deb http://deb.example/ ./".into(),
            key: Some("k".into()),
        }],
        sysctls: vec![Sysctl {
            key: "k".into(),
            value: "v".into(),
        }],
        kernel_cmdline: vec!["w".into()],
        files: vec![File {
            path: "/etc/haseed/f".into(),
            mode: 0o644,
            owner: "root:root".into(),
            content: String::new(),
        }],
        services: vec!["s".into()],
        warnings: vec!["w".into()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wit_parser::{Resolve, Type, TypeDefKind};

    fn scope(paths: &[&str]) -> Vec<String> {
        paths.iter().map(|p| p.to_string()).collect()
    }

    /// The paths a scope may name are exactly the fields of `node-plan` in wit/policy.wit,
    /// walked from the WIT itself (records, options and lists crossed), so `full_plan`
    /// cannot leave a nested field unset unnoticed.
    #[test]
    fn the_known_paths_are_the_wit_node_plan_fields() {
        let wit = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/wit/policy.wit");
        let mut resolve = Resolve::default();
        let text = std::fs::read_to_string(wit).expect("wit/policy.wit");
        let pkg = resolve.push_str("policy.wit", &text).expect("parses");
        let plan_iface = resolve.packages[pkg].interfaces["plan"];
        let node_plan = resolve.interfaces[plan_iface].types["node-plan"];
        fn walk(resolve: &Resolve, ty: &Type, path: &str, out: &mut BTreeSet<String>) {
            let Type::Id(id) = ty else { return };
            match &resolve.types[*id].kind {
                TypeDefKind::Record(r) => {
                    for f in &r.fields {
                        let p = if path.is_empty() {
                            f.name.clone()
                        } else {
                            format!("{path}.{}", f.name)
                        };
                        out.insert(p.clone());
                        walk(resolve, &f.ty, &p, out);
                    }
                }
                TypeDefKind::Option(t) | TypeDefKind::List(t) | TypeDefKind::Type(t) => {
                    walk(resolve, t, path, out)
                }
                _ => {}
            }
        }
        let mut from_wit = BTreeSet::new();
        walk(&resolve, &Type::Id(node_plan), "", &mut from_wit);
        assert!(from_wit.contains("haproxy.backends.servers.weight"));
        assert_eq!(known_paths(), &from_wit);
    }

    #[test]
    fn unknown_paths_are_refused_with_what_was_meant() {
        check(&scope(&["keepalived.instances.priority", "haproxy"])).expect("known");
        let e = check(&scope(&["keepalived.priority"])).unwrap_err();
        assert!(
            e.contains("\"keepalived.priority\" is not a plan field path")
                && e.contains("did you mean keepalived.instances.priority?"),
            "{e}"
        );
        let e = check(&scope(&["haproxy.backends[0].servers"])).unwrap_err();
        assert!(e.contains("did you mean haproxy.backends.servers?"), "{e}");
        let e = check(&scope(&["haproxy.nosuch"])).unwrap_err();
        assert!(
            e.contains("the plan's fields are apt-sources, files"),
            "{e}"
        );
    }

    #[test]
    fn a_path_grants_itself_and_what_is_below_it() {
        let s = scope(&["haproxy.backends.servers", "keepalived.instances.priority"]);
        assert!(covers(&s, "haproxy.backends.servers"));
        assert!(covers(&s, "haproxy.backends.servers.weight"));
        assert!(covers(&s, "warnings"), "always granted");
        assert!(!covers(&s, "haproxy.backends"), "above the grant");
        assert!(
            !covers(&s, "haproxy.backends.servers-extra"),
            "a prefix is not a parent"
        );
        assert!(!covers(&s, "keepalived.instances.track-scripts"));
        assert!(!covers(&[], "packages"));
        assert!(!covers_everything(&s));
        let all: Vec<String> = known_paths()
            .iter()
            .filter(|p| !p.contains('.') && *p != ALWAYS_GRANTED)
            .cloned()
            .collect();
        assert!(covers_everything(&all));
    }

    #[test]
    fn changes_are_named_by_the_deepest_path_that_says_what_changed() {
        let before = full_plan();
        assert!(changed(&before, &before).is_empty());

        let mut after = before.clone();
        after.warnings.push("more".into());
        assert!(
            changed(&before, &after).is_empty(),
            "warnings are not changes"
        );

        let mut after = before.clone();
        let k = after.keepalived.as_mut().unwrap();
        k.instances[0].priority = 2;
        k.instances[0].track_scripts.clear();
        k.scripts.clear();
        let servers = &mut after.haproxy.as_mut().unwrap().backends[0].servers;
        servers[0].weight = None;
        servers[0].check.as_mut().unwrap().rise = 5;
        let got: Vec<String> = changed(&before, &after).into_iter().collect();
        assert_eq!(
            got,
            [
                "haproxy.backends.servers.check.rise",
                "haproxy.backends.servers.weight",
                "keepalived.instances.priority",
                "keepalived.instances.track-scripts",
                "keepalived.scripts",
            ]
        );

        // An element added, removed or renamed is a change of the list.
        let mut after = before.clone();
        let servers = &mut after.haproxy.as_mut().unwrap().backends[0].servers;
        servers.push(servers[0].clone());
        servers[1].name = "s2".into();
        after.packages.push("q".into());
        after.files[0].path = "/etc/haseed/g".into();
        let got: Vec<String> = changed(&before, &after).into_iter().collect();
        assert_eq!(got, ["files", "haproxy.backends.servers", "packages"]);

        // A section set or cleared is a change of the section.
        let mut after = before.clone();
        after.haproxy = None;
        assert_eq!(
            changed(&before, &after).into_iter().collect::<Vec<_>>(),
            ["haproxy"]
        );
    }
}
