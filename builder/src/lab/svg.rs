//! `haseed lab --svg DIR`: one SVG per scenario trial drawing its timeline,
//! so a person sees the failover at a glance: the client's probes (a green
//! tick per answered probe, a red bar per failed one, as long as it waited)
//! and, one lane per holder, when that holder had the VIP. The time axis is
//! in ms from the scenario's action; the title states the trial's outage,
//! VIP moves and duplicate-VIP time. Hand-written SVG text: no dependency.

use std::fmt::Write as _;

use super::{Timeline, TrialResult};

const WIDTH: f64 = 1000.0;
const LEFT: f64 = 130.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 64.0;
const LANE: f64 = 22.0;
const GAP: f64 = 8.0;

const OK: &str = "#2e9e44";
const FAILED: &str = "#d62728";
const HELD: &str = "#1f62b4";
/// Held in one of a sample's two readings only (a move in between).
const HALF: &str = "#9ec1ea";

/// The SVG of one trial.
pub fn render(r: &TrialResult, tl: &Timeline) -> String {
    let origin = tl.marks.first().map_or(0.0, |(t, _)| *t);
    let first = tl
        .samples
        .first()
        .map(|(t, _)| *t)
        .into_iter()
        .chain(tl.probes.first().map(|p| p.t_ms))
        .fold(origin, f64::min);
    let last = tl
        .samples
        .last()
        .map(|(t, _)| *t + 20.0)
        .into_iter()
        .chain(tl.probes.iter().map(|p| p.t_ms + p.latency_ms))
        .fold(origin + 1.0, f64::max);
    let span = (last - first).max(1.0);
    let x = |t: f64| LEFT + (t - first) / span * (WIDTH - LEFT - RIGHT);
    let lanes = 1 + tl.holders.len();
    let axis_y = TOP + lanes as f64 * (LANE + GAP) + 4.0;
    let height = axis_y + 64.0;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        s,
        r#"<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="white"/>"#
    );
    let verdict = match &r.why {
        None => "ok".to_string(),
        Some(w) => format!("FAIL: {w}"),
    };
    let _ = writeln!(
        s,
        r#"<text x="10" y="20" font-size="14" font-weight="bold">{}</text>"#,
        esc(&format!(
            "{} trial {}: outage {:.1} ms, {} VIP moves, VIP held twice {:.1} ms ({} of {} probes failed)",
            r.scenario, r.trial, r.outage_ms, r.vip_moves, r.duplicate_vip_ms, r.failed_probes, r.probes
        ))
    );
    let sub = match &r.note {
        Some(n) => format!("{verdict}; {n}"),
        None => verdict,
    };
    let _ = writeln!(s, r#"<text x="10" y="38">{}</text>"#, esc(&sub));

    // Lane labels and backgrounds.
    let lane_y = |k: usize| TOP + k as f64 * (LANE + GAP);
    let names = std::iter::once("client probes").chain(tl.holders.iter().map(String::as_str));
    for (k, name) in names.enumerate() {
        let y = lane_y(k);
        let label = if k == 0 {
            name.to_string()
        } else {
            format!("{name} has the VIP")
        };
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT - 8.0,
            y + LANE / 2.0 + 4.0,
            esc(&label)
        );
        let _ = writeln!(
            s,
            r##"<rect x="{LEFT}" y="{y:.1}" width="{:.1}" height="{LANE}" fill="#f2f2f2"/>"##,
            WIDTH - LEFT - RIGHT
        );
    }

    // Probes: answered ones as ticks, failed ones as long as they waited.
    for p in &tl.probes {
        let (x0, w, colour) = if p.ok {
            (x(p.t_ms), 1.0, OK)
        } else {
            let w = (x(p.t_ms + p.latency_ms) - x(p.t_ms)).max(2.0);
            (x(p.t_ms), w, FAILED)
        };
        let _ = writeln!(
            s,
            r#"<rect x="{x0:.1}" y="{:.1}" width="{w:.1}" height="{LANE}" fill="{colour}"><title>{}</title></rect>"#,
            lane_y(0),
            esc(&format!(
                "{:.0} ms: {} ({:.1} ms)",
                p.t_ms - origin,
                if p.ok { "answered" } else { "failed" },
                p.latency_ms
            ))
        );
    }

    // Holders: runs of samples with the same reading.
    for h in 0..tl.holders.len() {
        let state = |k: usize| {
            tl.samples[k]
                .1
                .get(h)
                .map_or(0, |(a, b)| u8::from(*a) + u8::from(*b))
        };
        let mut k = 0;
        while k < tl.samples.len() {
            let st = state(k);
            let mut end = k + 1;
            while end < tl.samples.len() && state(end) == st {
                end += 1;
            }
            if st > 0 {
                let t0 = tl.samples[k].0;
                let t1 = tl.samples.get(end).map_or(t0 + 20.0, |(t, _)| *t);
                let _ = writeln!(
                    s,
                    r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{LANE}" fill="{}"/>"#,
                    x(t0),
                    lane_y(h + 1),
                    (x(t1) - x(t0)).max(1.0),
                    if st == 2 { HELD } else { HALF }
                );
            }
            k = end;
        }
    }

    // Events: a dashed line through every lane, labelled above them.
    for (t, what) in &tl.marks {
        let _ = writeln!(
            s,
            r##"<line x1="{0:.1}" y1="{1:.1}" x2="{0:.1}" y2="{2:.1}" stroke="#333" stroke-dasharray="4 3"/>"##,
            x(*t),
            TOP - 6.0,
            axis_y
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" font-size="10">{}</text>"#,
            x(*t) + 3.0,
            TOP - 8.0,
            esc(&format!("{what} ({:.0} ms)", t - origin))
        );
    }

    // The axis: ms from the first event.
    let _ = writeln!(
        s,
        r##"<line x1="{LEFT}" y1="{axis_y:.1}" x2="{:.1}" y2="{axis_y:.1}" stroke="#333"/>"##,
        WIDTH - RIGHT
    );
    let step = [
        10.0, 20.0, 50.0, 100.0, 200.0, 250.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
    ]
    .into_iter()
    .find(|st| span / st <= 12.0)
    .unwrap_or(span / 10.0);
    let mut tick = ((first - origin) / step).ceil() * step;
    // Bounded: at most ~13 ticks by the choice of step.
    for _ in 0..64 {
        if tick + origin > last {
            break;
        }
        // -0.0 (from ceil) prints as "-0".
        tick += 0.0;
        let tx = x(tick + origin);
        let _ = writeln!(
            s,
            r##"<line x1="{tx:.1}" y1="{axis_y:.1}" x2="{tx:.1}" y2="{:.1}" stroke="#333"/>"##,
            axis_y + 5.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{tx:.1}" y="{:.1}" text-anchor="middle">{tick:.0}</text>"#,
            axis_y + 17.0
        );
        tick += step;
    }
    let first_mark = tl.marks.first().map_or("the start", |(_, w)| w.as_str());
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="{:.1}">{}</text>"#,
        axis_y + 33.0,
        esc(&format!("ms since: {first_mark}"))
    );
    // Legend.
    let legend = [
        (OK, "probe answered"),
        (FAILED, "probe failed (bar: how long it waited)"),
        (HELD, "VIP held"),
        (HALF, "VIP in one of two readings (moving)"),
    ];
    let mut lx = LEFT;
    for (colour, what) in legend {
        let _ = writeln!(
            s,
            r#"<rect x="{lx:.1}" y="{:.1}" width="10" height="10" fill="{colour}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            axis_y + 42.0,
            lx + 14.0,
            axis_y + 51.0,
            esc(what)
        );
        lx += 14.0 + 7.0 * what.len() as f64 + 16.0;
    }
    s.push_str("</svg>\n");
    s
}

/// Text and attribute values escaped for XML.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{figures, Probe, Timeline};
    use super::*;

    /// A small well-formedness check: tags nest and close, attribute values
    /// are quoted, text holds no raw `<` and only known entities.
    fn well_formed(xml: &str) -> Result<Vec<String>, String> {
        let mut stack: Vec<String> = Vec::new();
        let mut seen = Vec::new();
        let mut rest = xml;
        let check_text = |t: &str| -> Result<(), String> {
            let mut r = t;
            while let Some(i) = r.find('&') {
                let ent = &r[i..];
                if !["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                    .iter()
                    .any(|e| ent.starts_with(e))
                {
                    return Err(format!("bare & in {t:?}"));
                }
                r = &r[i + 1..];
            }
            Ok(())
        };
        while let Some(open) = rest.find('<') {
            check_text(&rest[..open])?;
            if stack.is_empty() && !seen.is_empty() {
                return Err("content after the root element".into());
            }
            let close = rest[open..].find('>').ok_or("unterminated tag")? + open;
            let tag = &rest[open + 1..close];
            if tag.contains('<') {
                return Err(format!("'<' inside tag {tag:?}"));
            }
            if let Some(name) = tag.strip_prefix('/') {
                let top = stack.pop().ok_or(format!("stray </{name}>"))?;
                if top != name.trim() {
                    return Err(format!("</{name}> closes <{top}>"));
                }
            } else {
                let self_closing = tag.ends_with('/');
                let body = tag.trim_end_matches('/');
                let name = body.split_whitespace().next().ok_or("empty tag")?;
                // Every attribute is name="value".
                let mut attrs = &body[name.len()..];
                loop {
                    attrs = attrs.trim_start();
                    if attrs.is_empty() {
                        break;
                    }
                    let eq = attrs
                        .find("=\"")
                        .ok_or(format!("unquoted attribute in {tag:?}"))?;
                    let end = attrs[eq + 2..]
                        .find('"')
                        .ok_or(format!("unterminated value in {tag:?}"))?;
                    check_text(&attrs[eq + 2..eq + 2 + end])?;
                    attrs = &attrs[eq + 2 + end + 1..];
                }
                seen.push(name.to_string());
                if !self_closing {
                    stack.push(name.to_string());
                }
            }
            rest = &rest[close + 1..];
        }
        if !rest.trim().is_empty() || !stack.is_empty() {
            return Err(format!("unclosed: {stack:?}"));
        }
        Ok(seen)
    }

    fn example() -> (TrialResult, Timeline) {
        let probes: Vec<Probe> = (0..50)
            .map(|k| Probe {
                t_ms: 1000.0 + k as f64 * 20.0,
                ok: !(20..23).contains(&k),
                latency_ms: if (20..23).contains(&k) { 200.0 } else { 1.5 },
            })
            .collect();
        let (y, n) = ((true, true), (false, false));
        let samples: Vec<_> = (0..50)
            .map(|k| {
                let t = 1000.0 + k as f64 * 20.0;
                let h = match k {
                    0..=21 => vec![y, n],
                    22 => vec![(true, false), y],
                    _ => vec![n, y],
                };
                (t, h)
            })
            .collect();
        let mut r = figures("haproxy-killed", 2, &probes, &samples);
        r.why = Some("outage 60.0 ms > 50 ms & <more>".into());
        r.note = Some("lb1's \"note\"".into());
        let tl = Timeline {
            holders: vec!["lb1".into(), "lb2".into()],
            probes,
            samples,
            marks: vec![
                (1400.0, "SIGKILL haproxy on lb1".into()),
                (1500.0, "x".into()),
            ],
        };
        (r, tl)
    }

    #[test]
    fn draws_a_well_formed_timeline() {
        let (r, tl) = example();
        let svg = render(&r, &tl);
        let tags = well_formed(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
        assert_eq!(tags[0], "svg");
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        // The title states the figures; text is escaped.
        assert!(
            svg.contains(
                "haproxy-killed trial 2: outage 60.0 ms, 1 VIP moves, VIP held twice 0.0 ms"
            ),
            "{svg}"
        );
        assert!(svg.contains("&amp; &lt;more&gt;"), "{svg}");
        assert!(svg.contains("lb1&apos;s &quot;note&quot;"), "{svg}");
        // One lane per holder plus the probes, 50 probes, 3 of them red.
        assert!(svg.contains(">lb1 has the VIP<") && svg.contains(">lb2 has the VIP<"));
        assert_eq!(
            svg.matches(&format!("fill=\"{FAILED}\"><title>")).count(),
            3
        );
        assert_eq!(svg.matches("<title>").count(), 50);
        // lb1 held, then a half reading, then lb2: three runs.
        let lane = |c: &str| format!("height=\"{LANE}\" fill=\"{c}\"/>");
        assert_eq!(svg.matches(&lane(HELD)).count(), 2);
        assert_eq!(svg.matches(&lane(HALF)).count(), 1);
        // The axis counts from the action: 0 is a tick, the start negative.
        assert!(
            svg.contains(">0</text>") && svg.contains(">-400</text>"),
            "{svg}"
        );
        assert!(svg.contains("ms since: SIGKILL haproxy on lb1"));
        // The checker itself rejects broken XML.
        assert!(well_formed("<svg><g></svg>").is_err());
        assert!(well_formed("<svg a=1/>").is_err());
        assert!(well_formed("<svg>a & b</svg>").is_err());
    }

    #[test]
    fn xmllint_accepts_it_when_installed() {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let Ok(mut child) = Command::new("xmllint")
            .args(["--noout", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        else {
            eprintln!("xmllint not installed: the structural check above stands");
            return;
        };
        let (r, tl) = example();
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(render(&r, &tl).as_bytes())
            .expect("write");
        let o = child.wait_with_output().expect("xmllint");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    #[test]
    fn the_axis_has_no_negative_zero() {
        let probes = [Probe {
            t_ms: 1900.0,
            ok: true,
            latency_ms: 1.0,
        }];
        let samples = vec![(970.0, vec![(true, true)])];
        let r = figures("steady", 1, &probes, &samples);
        let tl = Timeline {
            holders: vec!["lb1".into()],
            probes: probes.to_vec(),
            samples,
            marks: vec![(1000.0, "x".into())],
        };
        let svg = render(&r, &tl);
        assert!(
            svg.contains(">0</text>") && !svg.contains(">-0</text>"),
            "{svg}"
        );
    }

    #[test]
    fn an_empty_timeline_still_draws() {
        let r = figures("steady", 1, &[], &[]);
        let svg = render(&r, &Timeline::default());
        well_formed(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
    }
}
