//! Ways to show a plan to a person or a machine: a table, JSON, Graphviz dot.
//! Pure: takes the site and plans, returns text.

use std::fmt::Write;

use crate::contract::{NodePlan, Site};

/// One row per node: what the chain decided, at a glance.
pub fn table(site: &Site, plans: &[NodePlan]) -> String {
    let mut rows: Vec<[String; 7]> = vec![[
        "NODE".into(),
        "ROLES".into(),
        "PLATFORM".into(),
        "ADDRESS".into(),
        "VRRP (vip:state/prio)".into(),
        "HAPROXY (frontend->servers)".into(),
        "PACKAGES".into(),
    ]];
    for (node, plan) in site.nodes.iter().zip(plans) {
        let roles = node
            .roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let vrrp = plan
            .keepalived
            .as_ref()
            .map(|k| {
                k.instances
                    .iter()
                    .map(|i| {
                        format!(
                            "{}:{}/{}{}",
                            i.name,
                            i.state.as_str(),
                            i.priority,
                            if i.nopreempt { " nopreempt" } else { "" }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_else(|| "-".into());
        let proxies = plan
            .haproxy
            .as_ref()
            .map(|h| {
                h.frontends
                    .iter()
                    .map(|f| {
                        let servers = h
                            .backends
                            .iter()
                            .find(|b| b.name == f.backend)
                            .map(|b| b.servers.len())
                            .unwrap_or(0);
                        let ports = if f.port_first == f.port_last {
                            f.port_first.to_string()
                        } else {
                            format!("{}-{}", f.port_first, f.port_last)
                        };
                        format!("{}:{}->{}", f.name, ports, servers)
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_else(|| "-".into());
        let packages = if plan.packages.is_empty() {
            "-".into()
        } else {
            plan.packages.join(",")
        };
        rows.push([
            node.name.clone(),
            roles,
            node.platform.as_str().into(),
            node.address.clone(),
            vrrp,
            proxies,
            packages,
        ]);
    }
    let mut widths = [0usize; 7];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{:<width$}  ", cell, width = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The site and every node's plan: the `site` and `nodes` fields of `plan --json`.
pub fn json(site: &Site, plans: &[NodePlan]) -> anyhow::Result<serde_json::Value> {
    #[derive(serde::Serialize)]
    struct NodeOut<'a> {
        name: &'a str,
        plan: &'a NodePlan,
    }
    #[derive(serde::Serialize)]
    struct Out<'a> {
        site: &'a Site,
        nodes: Vec<NodeOut<'a>>,
    }
    let out = Out {
        site,
        nodes: site
            .nodes
            .iter()
            .zip(plans)
            .map(|(n, p)| NodeOut {
                name: &n.name,
                plan: p,
            })
            .collect(),
    };
    Ok(serde_json::to_value(&out)?)
}

/// The topology for Graphviz: VIPs with their holders (and who starts as
/// MASTER), services on each VIP, and their backends.
pub fn dot(site: &Site, plans: &[NodePlan]) -> String {
    // A DOT string: backslashes and quotes escaped, a line break as DOT's own `\n` (escaping
    // a `\n` written into the label printed it literally).
    let q = |s: &str| {
        format!(
            "\"{}\"",
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        )
    };
    let mut out = String::new();
    let _ = writeln!(out, "digraph {} {{", q(&site.name));
    out.push_str("  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n");
    for (i, vip) in site.vips.iter().enumerate() {
        let _ = writeln!(
            out,
            "  {} [shape=doubleoctagon, label={}];",
            q(&format!("vip:{}", vip.name)),
            q(&format!(
                "VIP {}\n{} (vrid {})",
                vip.name, vip.address, vip.vrid
            ))
        );
        for &h in &vip.holders {
            let node = &site.nodes[h as usize];
            let state = plans[h as usize]
                .keepalived
                .as_ref()
                .and_then(|k| {
                    k.instances
                        .iter()
                        .find(|inst| inst.virtual_router_id == vip.vrid)
                })
                .map(|inst| format!("{} {}", inst.state.as_str(), inst.priority))
                .unwrap_or_else(|| "no instance".into());
            let _ = writeln!(
                out,
                "  {} -> {} [label={}, style=dashed];",
                q(&format!("node:{}", node.name)),
                q(&format!("vip:{}", vip.name)),
                q(&state)
            );
        }
        for svc in site.services.iter().filter(|s| s.vip as usize == i) {
            let ports = if svc.port_first == svc.port_last {
                svc.port_first.to_string()
            } else {
                format!("{}-{}", svc.port_first, svc.port_last)
            };
            let _ = writeln!(
                out,
                "  {} [shape=box, style=rounded, label={}];",
                q(&format!("svc:{}", svc.name)),
                q(&format!("{}\n:{} {}", svc.name, ports, svc.mode.as_str()))
            );
            let _ = writeln!(
                out,
                "  {} -> {};",
                q(&format!("vip:{}", vip.name)),
                q(&format!("svc:{}", svc.name))
            );
            for &b in &svc.backends {
                let port = svc
                    .backend_port
                    .map(|p| format!(":{p}"))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "  {} -> {} [label={}];",
                    q(&format!("svc:{}", svc.name)),
                    q(&format!("node:{}", site.nodes[b as usize].name)),
                    q(&port)
                );
            }
        }
    }
    for node in &site.nodes {
        let roles = node
            .roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let _ = writeln!(
            out,
            "  {} [shape=component, label={}];",
            q(&format!("node:{}", node.name)),
            q(&format!("{}\n{}\n{}", node.name, node.address, roles))
        );
    }
    out.push_str("}\n");
    out
}
