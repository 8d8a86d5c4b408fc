//! Stages: one inventory, several targets (say a laptop, a staging account,
//! production). `[stage.NAME]` tables overlay the base document before it is
//! read; `--stage NAME` picks one.
//!
//! ```toml
//! [stage.production.defaults]          # keys of [defaults]
//! platform = "aws"
//! [stage.production.node.lb1]          # the [[node]] named lb1
//! address = "10.0.1.11"
//! [stage.production.vip.api]           # the [[vip]] named api
//! address = "10.0.1.100"
//! aws = { method = "secondary-ip" }
//! [stage.production.default_policy]    # keys of [default_policy]
//! priority = 150
//! [stage.production.plugin."tune.wasm".settings]   # the [[plugin]] with that path
//! rise = 5
//! ```
//!
//! An overlay replaces whole values key by key (a table value such as `check`
//! or `aws` is replaced as a whole). It may only address what the base has: a
//! `[[node]]`, `[[vip]]`, `[[network]]`, `[[service]]` or `[[plugin]]` that
//! the base defines, with keys that table kind takes (names cannot change).
//! A staged key takes the overlay's key (and its span), so every later error
//! about a staged value points at the overlay line. Linear in the size of the
//! file.

use std::collections::HashMap;

use toml_edit::{Item, Table, TableLike};

use super::read::{self, show, Cx};
use crate::diag::Diagnostic;

/// The sections an overlay may address, with the keys each takes (None: any key).
const SECTIONS: &[(&str, Option<&[&str]>)] = &[
    ("defaults", Some(read::HOST_KEYS)),
    ("default_policy", None),
    ("network", Some(read::NETWORK_KEYS)),
    ("vip", Some(read::VIP_KEYS)),
    ("service", Some(read::SERVICE_KEYS)),
    ("node", Some(read::NODE_KEYS)),
    ("plugin", Some(&["settings"])),
];

fn span_of(item: &Item) -> Option<std::ops::Range<usize>> {
    match item {
        Item::Table(t) => t.span(),
        _ => item.span(),
    }
}

/// The stages `root` defines, in file order.
pub(super) fn names(root: &Table) -> Vec<String> {
    root.get("stage")
        .and_then(Item::as_table_like)
        .map(|t| t.iter().map(|(k, _)| k.to_string()).collect())
        .unwrap_or_default()
}

/// Removes `[stage]` from `root` and applies stage `name` (if any) to it.
/// Returns the span of the stage's name, or None when there is no such stage
/// (reported in `cx`) or none was asked for.
pub(super) fn apply(
    cx: &mut Cx<'_>,
    root: &mut Table,
    name: Option<&str>,
) -> Option<std::ops::Range<usize>> {
    let stages = root.remove("stage");
    let name = name?;
    let header = |cx: &Cx<'_>, t: &Item| {
        span_of(t).map(|s| {
            let text = cx.source.get(s.clone()).unwrap_or("");
            s.start..s.start + text.find('\n').unwrap_or(text.len())
        })
    };
    let Some(stages_item) = stages else {
        cx.push(
            Diagnostic::error(
                cx.file,
                None,
                format!(
                    "unknown stage {}: this site file defines no stages",
                    show(name)
                ),
            )
            .with_help("define one with [stage.NAME] tables, or leave out --stage"),
        );
        return None;
    };
    let Some(stages_tbl) = stages_item.as_table_like() else {
        let span = header(cx, &stages_item).unwrap_or(0..0);
        cx.err(span, "`stage` must be a table of stages ([stage.NAME])");
        return None;
    };
    let Some(overlay) = stages_tbl.get(name) else {
        let names: Vec<&str> = stages_tbl.iter().map(|(k, _)| k).collect();
        let span = stages_tbl
            .iter()
            .next()
            .and_then(|(k, _)| stages_tbl.key(k).and_then(|k| k.span()))
            .or_else(|| header(cx, &stages_item));
        cx.push(
            Diagnostic::error(cx.file, span, format!("unknown stage {}", show(name)))
                .with_help(format!("stages defined in this file: {}", names.join(", "))),
        );
        return None;
    };
    let name_span = stages_tbl
        .key(name)
        .and_then(|k| k.span())
        .or_else(|| span_of(overlay))
        .unwrap_or(0..0);
    let Some(overlay) = overlay.as_table_like() else {
        let span = span_of(overlay).unwrap_or(0..0);
        cx.err(span, format!("stage {} must be a table", show(name)));
        return None;
    };
    for (section, item) in overlay.iter() {
        let key_span = overlay
            .key(section)
            .and_then(|k| k.span())
            .or_else(|| span_of(item))
            .unwrap_or(0..0);
        let Some(&(_, keys)) = SECTIONS.iter().find(|(s, _)| *s == section) else {
            let list: Vec<&str> = SECTIONS.iter().map(|(s, _)| *s).collect();
            let d = cx
                .diag(
                    key_span,
                    format!("stage {name} cannot overlay {}", show(section)),
                )
                .with_help(format!("a stage overlays: {}", list.join(", ")));
            cx.push(d);
            continue;
        };
        let Some(body) = item.as_table_like() else {
            cx.err(
                key_span,
                format!("stage {name}: `{section}` must be a table"),
            );
            continue;
        };
        match section {
            "defaults" | "default_policy" => {
                let Some(base) = root.get_mut(section).and_then(Item::as_table_like_mut) else {
                    cx.err(
                        key_span,
                        format!("stage {name} overlays [{section}], which the base does not have"),
                    );
                    continue;
                };
                merge(cx, name, &format!("[{section}]"), base, body, keys);
            }
            _ => overlay_named(cx, name, root, section, body, keys.unwrap_or(&[])),
        }
    }
    Some(name_span)
}

/// `[stage.NAME.SECTION.ELEMENT]` tables onto the base's `[[SECTION]]` elements.
fn overlay_named(
    cx: &mut Cx<'_>,
    stage: &str,
    root: &mut Table,
    section: &str,
    body: &dyn TableLike,
    keys: &[&str],
) {
    // The base elements by name (by path for plugins).
    let id_key = if section == "plugin" { "path" } else { "name" };
    let mut base = root.get_mut(section).and_then(|i| match i {
        Item::ArrayOfTables(a) => Some(a),
        _ => None,
    });
    let mut by_name: HashMap<String, usize> = HashMap::new();
    if let Some(a) = base.as_deref() {
        for (i, t) in a.iter().enumerate() {
            if let Some(n) = t.get(id_key).and_then(Item::as_str) {
                by_name.entry(n.to_string()).or_insert(i);
            }
        }
    }
    for (element, item) in body.iter() {
        let span = body
            .key(element)
            .and_then(|k| k.span())
            .or_else(|| span_of(item))
            .unwrap_or(0..0);
        let what = format!("[[{section}]] {}", show(element));
        let (Some(&i), Some(a)) = (by_name.get(element), base.as_deref_mut()) else {
            let mut names: Vec<&str> = by_name.keys().map(String::as_str).collect();
            names.sort_unstable();
            let d = cx
                .diag(
                    span,
                    format!("stage {stage} overlays {what}, which the base does not define"),
                )
                .with_help(if names.is_empty() {
                    format!("the base has no [[{section}]] tables")
                } else {
                    format!("the base defines: {}", names.join(", "))
                });
            cx.push(d);
            continue;
        };
        let Some(changes) = item.as_table_like() else {
            cx.err(span, format!("stage {stage}: {what} must be a table"));
            continue;
        };
        let Some(target) = a.get_mut(i) else { continue };
        if section == "plugin" {
            // Only `settings`, merged key by key.
            for (k, v) in changes.iter() {
                let kspan = changes
                    .key(k)
                    .and_then(|x| x.span())
                    .or_else(|| span_of(v))
                    .unwrap_or(0..0);
                if k != "settings" {
                    let d = cx
                        .diag(
                            kspan,
                            format!("stage {stage} cannot overlay {} of {what}", show(k)),
                        )
                        .with_help("a stage may change a plugin's settings only");
                    cx.push(d);
                    continue;
                }
                let Some(v) = v.as_table_like() else {
                    cx.err(
                        kspan,
                        format!("stage {stage}: settings of {what} must be a table"),
                    );
                    continue;
                };
                if target.get("settings").is_none() {
                    target.insert("settings", Item::Table(Table::new()));
                }
                if let Some(base) = target.get_mut("settings").and_then(Item::as_table_like_mut) {
                    merge(cx, stage, &what, base, v, None);
                }
            }
            continue;
        }
        merge(cx, stage, &what, target, changes, Some(keys));
    }
}

/// Sets every key of `changes` on `base` (whole values), refusing keys outside
/// `keys` and renames.
fn merge(
    cx: &mut Cx<'_>,
    stage: &str,
    what: &str,
    base: &mut dyn TableLike,
    changes: &dyn TableLike,
    keys: Option<&[&str]>,
) {
    for (k, v) in changes.iter() {
        let kspan = changes
            .key(k)
            .and_then(|x| x.span())
            .or_else(|| span_of(v))
            .unwrap_or(0..0);
        if let Some(keys) = keys {
            if k == "name" || k == "path" {
                cx.err(
                    kspan,
                    format!("stage {stage} cannot rename {what}: overlays address it by name"),
                );
                continue;
            }
            if !keys.contains(&k) {
                let d = cx
                    .diag(
                        kspan,
                        format!("stage {stage} overlays unknown key {} of {what}", show(k)),
                    )
                    .with_help(format!("expected one of: {}", keys.join(", ")));
                cx.push(d);
                continue;
            }
        }
        let key = changes
            .key(k)
            .cloned()
            .unwrap_or_else(|| toml_edit::Key::new(k));
        // The overlay's key replaces the base's, so that messages point at
        // the overlay's line: the parsed values carry no span of their own,
        // only keys do (a replaced value under the base's key pointed at the
        // base's line). The key moves to the table's end; no reader depends
        // on the order of keys.
        base.remove(k);
        if let toml_edit::Entry::Vacant(e) = base.entry_format(&key) {
            e.insert(v.clone());
        }
    }
}
