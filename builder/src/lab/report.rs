//! The lab's report: the table, the per-scenario summary and the SVG
//! timelines, from the trials' results.

use super::*;

/// Median and max outage of one scenario over its trials.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub scenario: &'static str,
    pub trials: usize,
    pub passed: usize,
    pub median_outage_ms: f64,
    pub max_outage_ms: f64,
    pub max_duplicate_vip_ms: f64,
}

pub(super) fn summarize(results: &[TrialResult]) -> Vec<Summary> {
    let mut names: Vec<&'static str> = results.iter().map(|r| r.scenario).collect();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let rs: Vec<&TrialResult> = results.iter().filter(|r| r.scenario == name).collect();
            let mut outages: Vec<f64> = rs.iter().map(|r| r.outage_ms).collect();
            outages.sort_by(f64::total_cmp);
            Summary {
                scenario: name,
                trials: rs.len(),
                passed: rs.iter().filter(|r| r.passed).count(),
                median_outage_ms: outages[outages.len() / 2],
                max_outage_ms: outages.last().copied().unwrap_or(0.0),
                max_duplicate_vip_ms: rs.iter().map(|r| r.duplicate_vip_ms).fold(0.0, f64::max),
            }
        })
        .collect()
}

/// One SVG per trial, `SCENARIO-TRIAL.svg` in `dir`; returns their paths.
pub(super) fn write_svgs(dir: &Path, results: &[TrialResult]) -> anyhow::Result<Vec<String>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut paths = Vec::new();
    for r in results {
        let Some(tl) = &r.timeline else { continue };
        let path = dir.join(format!("{}-{}.svg", r.scenario, r.trial));
        fs::write(&path, svg::render(r, tl))
            .with_context(|| format!("writing {}", path.display()))?;
        paths.push(path.display().to_string());
    }
    Ok(paths)
}

pub(super) fn print_table(topo: &Topology, results: &[TrialResult], max: u64) {
    println!(
        "lab: VIP {} ({}) held by {}; objective: outage <= {max} ms (a hung haproxy: its check's bound), VIP never held twice",
        topo.vip_name,
        topo.vip,
        topo.holders
            .iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "{:<20} {:>5} {:>10} {:>7} {:>7} {:>12} {:>6} {:>13}  RESULT",
        "SCENARIO", "TRIAL", "OUTAGE_MS", "PROBES", "FAILED", "MAX_LAT_MS", "MOVES", "DUPLICATE_MS"
    );
    for r in results {
        println!(
            "{:<20} {:>5} {:>10.1} {:>7} {:>7} {:>12.1} {:>6} {:>13.1}  {}",
            r.scenario,
            r.trial,
            r.outage_ms,
            r.probes,
            r.failed_probes,
            r.max_latency_ms,
            r.vip_moves,
            r.duplicate_vip_ms,
            match &r.why {
                None if r.reference => "reference (not judged)".to_string(),
                None => "ok".to_string(),
                Some(w) => format!("FAIL: {w}"),
            }
        );
        if let Some(n) = &r.note {
            println!("{:<20} {:>5} note: {n}", "", "");
        }
    }
    for s in summarize(results) {
        if results
            .iter()
            .any(|r| r.scenario == s.scenario && r.reference)
        {
            println!(
                "{}: reference, {} trials; outage median {:.1} ms, max {:.1} ms; VIP held twice at most {:.1} ms",
                s.scenario, s.trials, s.median_outage_ms, s.max_outage_ms, s.max_duplicate_vip_ms
            );
            continue;
        }
        println!(
            "{}: {}/{} trials met the objective; outage median {:.1} ms, max {:.1} ms; VIP held twice at most {:.1} ms",
            s.scenario, s.passed, s.trials, s.median_outage_ms, s.max_outage_ms, s.max_duplicate_vip_ms
        );
    }
}
