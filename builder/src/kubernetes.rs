//! Build-date warnings about the Kubernetes packages a plan installs: a minor
//! past its upstream end of life, and a pinned pkgs.k8s.io signing key that
//! expires within [`KEY_WARNING_DAYS`] of the build. Pure: plans and a date
//! in, warning lines out; the caller (the CLI) supplies the date, so tests
//! inject it and artifacts never depend on the wall clock.
//!
//! Why the host and not the policy: plugins see a fixed clock (policy.rs), so
//! only the host knows the build date. What it reads from a plan:
//!
//! - the default policy's `/etc/haseed/kubernetes-apt.env` (`K8S_MINOR`,
//!   `K8S_KEY_FINGERPRINT`; written by `plugins/default-policy/src/kubernetes.rs`,
//!   read on the node by `haseed-kubernetes-apt.service`);
//! - any APT source whose line names `pkgs.k8s.io/core:/stable:/vX.Y/` (an
//!   earlier plugin's repository): its minor.
//!
//! A key's expiry is known for the fingerprints in [`PINNED_KEYS`]; a key
//! haseed does not know is not judged (the node checks expiry itself).
//!
//! It must never fail a build: these are warnings; the date only decides
//! whether one is shown.

use crate::contract::{NodePlan, Site};

/// Warn when a pinned key expires within this many days of the build (the
/// issue's figure: enough to rebuild and re-flash a site before it bites).
pub const KEY_WARNING_DAYS: i64 = 60;

/// The file the default policy writes for its Kubernetes packages.
pub const ENV_PATH: &str = "/etc/haseed/kubernetes-apt.env";

/// Kubernetes minors and their upstream end-of-life dates, oldest first.
/// Source: the release pages at <https://kubernetes.io/releases/> ("End Of
/// Life Date"), read 2026-12-06; 1.31 from kubernetes/website
/// `data/releases/schedule.yaml` at 28d3e131. 1.32 is left out: its page was
/// not read, and a minor missing here gets its own warning rather than a
/// guessed date. Add a line for each new minor (and move the default
/// policy's `DEFAULT_MINOR`; a test keeps the two in step).
pub const MINORS: &[(u32, &str)] = &[
    (30, "2025-07-15"),
    (31, "2025-10-28"),
    (33, "2026-06-28"),
    (34, "2026-10-27"),
    (35, "2027-02-28"),
    (36, "2027-06-28"),
    (37, "2027-10-28"),
];

/// pkgs.k8s.io signing keys haseed knows: fingerprint, expiry (UTC date), who.
/// DE15...6436: `gpg --show-keys --with-colons` of the key served at
/// `https://pkgs.k8s.io/core:/stable:/v1.31/deb/Release.key` as embedded in
/// the default policy (`pkgs-k8s-io.asc`): created 2022-08-25, expires
/// 1798508024 = 2026-12-29.
pub const PINNED_KEYS: &[(&str, &str, &str)] = &[(
    "DE15B14486CD377B9E876E1A234654DA9A296436",
    "2026-12-29",
    "isv:kubernetes OBS Project",
)];

/// A calendar date as days since 1970-01-01 (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Day(pub i64);

impl Day {
    /// Parses "YYYY-MM-DD" (a real calendar date).
    pub fn parse(text: &str) -> Option<Day> {
        let mut parts = text.splitn(3, '-');
        let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
        if y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return None;
        }
        let (y, m, d): (i64, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
        if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
            return None;
        }
        Some(Day(days_from_civil(y, m, d)))
    }

    /// Today in UTC from the wall clock (only the CLI calls this).
    pub fn today() -> Day {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        Day(secs.div_euclid(86_400))
    }
}

/// Now, as RFC 3339 in UTC to the second (flash logs, the day-2 record).
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let day = Day(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!("{day}T{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

impl std::fmt::Display for Day {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (y, m, d) = civil_from_days(self.0);
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

fn days_in_month(y: i64, m: u32) -> u32 {
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Howard Hinnant's `days_from_civil` (proleptic Gregorian calendar;
/// <https://howardhinnant.github.io/date_algorithms.html>).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse, same source.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// What one plan says about its Kubernetes packages.
#[derive(Debug, Default, PartialEq, Eq)]
struct Packages {
    /// "1.37"
    minor: Option<String>,
    fingerprint: Option<String>,
}

fn packages_of(plan: &NodePlan) -> Packages {
    let mut found = Packages::default();
    if let Some(env) = plan.files.iter().find(|f| f.path == ENV_PATH) {
        for line in env.content.lines() {
            if let Some(v) = line.strip_prefix("K8S_MINOR=") {
                found.minor = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("K8S_KEY_FINGERPRINT=") {
                found.fingerprint = Some(v.trim().to_ascii_uppercase());
            }
        }
    }
    if found.minor.is_none() {
        found.minor = plan.apt_sources.iter().find_map(|a| minor_in(&a.source));
    }
    found
}

/// The minor of a `pkgs.k8s.io/core:/stable:/vX.Y/` URL in `text`.
fn minor_in(text: &str) -> Option<String> {
    let (_, rest) = text.split_once("pkgs.k8s.io/core:/stable:/v")?;
    let (version, _) = rest.split_once('/')?;
    let (major, minor) = version.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    (digits(major) && digits(minor)).then(|| version.to_string())
}

/// "master1, master2 and 3 more": names a group of nodes briefly.
fn node_list(names: &[&str]) -> String {
    const SHOWN: usize = 5;
    let mut text = names[..names.len().min(SHOWN)].join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}

/// The warnings for `plans` (one per node of `site`, same order) built on
/// `today`, one line each, grouped by problem so a large site is not flooded.
pub fn warnings(site: &Site, plans: &[NodePlan], today: Day) -> Vec<String> {
    grouped_warnings(site, |i| {
        let Some(plan) = plans.get(i) else {
            return Vec::new();
        };
        let found = packages_of(plan);
        [
            found.minor.as_deref().and_then(|m| minor_problem(m, today)),
            found
                .fingerprint
                .as_deref()
                .and_then(|f| key_problem(f, today)),
        ]
        .into_iter()
        .flatten()
        .collect()
    })
}

/// "warning: site S, nodes A, B and 3 more: PROBLEM" lines: `problems(i)` gives node `i`'s
/// problems; each distinct problem is one line naming its nodes, in first-seen order.
pub(crate) fn grouped_warnings(
    site: &Site,
    mut problems: impl FnMut(usize) -> Vec<String>,
) -> Vec<String> {
    let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
    for (i, node) in site.nodes.iter().enumerate() {
        for problem in problems(i) {
            match groups.iter_mut().find(|g| g.0 == problem) {
                Some(group) => group.1.push(&node.name),
                None => groups.push((problem, vec![&node.name])),
            }
        }
    }
    groups
        .into_iter()
        .map(|(problem, nodes)| {
            let noun = if nodes.len() == 1 { "node" } else { "nodes" };
            format!(
                "warning: site {}, {noun} {}: {problem}",
                site.name,
                node_list(&nodes)
            )
        })
        .collect()
}

fn minor_problem(minor: &str, today: Day) -> Option<String> {
    let newest = MINORS.last().map(|(m, _)| format!("1.{m}"))?;
    let known = minor
        .strip_prefix("1.")
        .and_then(|m| m.parse::<u32>().ok())
        .and_then(|m| MINORS.iter().find(|(k, _)| *k == m));
    let Some((_, eol)) = known else {
        return Some(format!(
            "Kubernetes {minor} is not in haseed's table of releases, so its end of life is not \
             checked: see https://kubernetes.io/releases/ (newest known: {newest})"
        ));
    };
    let eol = Day::parse(eol)?;
    (eol <= today).then(|| {
        format!(
            "Kubernetes {minor} reached its upstream end of life on {eol} (build date {today}) and \
             gets no security fixes: set [default_policy] kubernetes_version = \"{newest}\""
        )
    })
}

fn key_problem(fingerprint: &str, today: Day) -> Option<String> {
    let (_, expires, who) = PINNED_KEYS.iter().find(|(f, _, _)| *f == fingerprint)?;
    let expires = Day::parse(expires)?;
    let left = expires.0 - today.0;
    if left > KEY_WARNING_DAYS {
        return None;
    }
    let when = if left > 0 {
        format!("expires on {expires}, {left} days after the build date {today}")
    } else {
        format!("expired on {expires} (build date {today})")
    };
    Some(format!(
        "the pinned pkgs.k8s.io signing key {fingerprint} ({who}) {when}: the embedded copy will \
         not do, so these nodes install Kubernetes only if they fetch a key with that fingerprint \
         and a later expiry from pkgs.k8s.io at boot (haseed-kubernetes-apt.service); if upstream \
         rotated the key, set [default_policy] kubernetes_key_fingerprint and kubernetes_key"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{AptSource, File};

    fn day(text: &str) -> Day {
        Day::parse(text).expect("a valid date")
    }

    fn site(nodes: &[&str]) -> Site {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("assets/examples/pi-k8s/site.toml");
        let mut site = crate::inventory::load(&path).expect("example parses").site;
        site.nodes.truncate(nodes.len());
        for (n, name) in site.nodes.iter_mut().zip(nodes) {
            n.name = name.to_string();
        }
        site
    }

    fn plan_with_env(minor: &str, fingerprint: &str) -> NodePlan {
        let mut plan = NodePlan::empty("n");
        plan.files.push(File {
            path: ENV_PATH.into(),
            mode: 0o644,
            owner: "root:root".into(),
            content: format!(
                "# comment\nK8S_MINOR={minor}\nK8S_REPO=https://pkgs.k8s.io/core:/stable:/v{minor}/deb/\n\
                 K8S_KEY_FINGERPRINT={fingerprint}\n"
            ),
        });
        plan
    }

    const PINNED: &str = "DE15B14486CD377B9E876E1A234654DA9A296436";
    const UNKNOWN_KEY: &str = "0123456789ABCDEF0123456789ABCDEF01234567";

    #[test]
    fn dates_round_trip_and_refuse_non_dates() {
        assert_eq!(day("1970-01-01"), Day(0));
        // 1798508024 s (the key's expiry) is on 2026-12-29.
        assert_eq!(day("2026-12-29"), Day(1_798_508_024 / 86_400));
        for text in ["2026-12-06", "2000-02-29", "2027-10-28", "1999-12-31"] {
            assert_eq!(day(text).to_string(), text);
        }
        for bad in [
            "2026-02-29",
            "2026-13-01",
            "2026-00-10",
            "26-12-06",
            "2026-12-6",
            "x",
        ] {
            assert_eq!(Day::parse(bad), None, "{bad}");
        }
        assert!(Day::today() > day("2024-01-01"));
    }

    #[test]
    fn a_minor_past_its_end_of_life_warns_with_node_site_and_date() {
        let site = site(&["master1"]);
        let w = warnings(
            &site,
            &[plan_with_env("1.31", UNKNOWN_KEY)],
            day("2026-12-06"),
        );
        assert_eq!(w.len(), 1, "{w:?}");
        for part in [
            "site pi-k8s, node master1",
            "Kubernetes 1.31 reached its upstream end of life on 2025-10-28",
            "build date 2026-12-06",
            "kubernetes_version = \"1.37\"",
        ] {
            assert!(w[0].contains(part), "{part:?} missing: {}", w[0]);
        }
    }

    #[test]
    fn a_supported_minor_does_not_warn() {
        let site = site(&["master1"]);
        // 1.34's last day of support is 2026-10-27 (exclusive end of life).
        assert!(warnings(
            &site,
            &[plan_with_env("1.34", UNKNOWN_KEY)],
            day("2026-10-26")
        )
        .is_empty());
        assert!(warnings(
            &site,
            &[plan_with_env("1.37", UNKNOWN_KEY)],
            day("2026-12-06")
        )
        .is_empty());
        // Reached on the day itself.
        assert_eq!(
            warnings(
                &site,
                &[plan_with_env("1.34", UNKNOWN_KEY)],
                day("2026-10-27")
            )
            .len(),
            1
        );
    }

    #[test]
    fn a_minor_from_an_apt_source_is_judged_too_and_unknown_minors_are_named() {
        let site = site(&["worker1"]);
        let mut plan = NodePlan::empty("worker1");
        plan.apt_sources.push(AptSource {
            name: "kubernetes".into(),
            source: "deb [signed-by=$KEY_FILE] https://pkgs.k8s.io/core:/stable:/v1.30/deb/ /"
                .into(),
            key: None,
        });
        let w = warnings(&site, &[plan], day("2026-12-06"));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("Kubernetes 1.30 reached its upstream end of life on 2025-07-15"),
            "{}",
            w[0]
        );
        let w = warnings(
            &site,
            &[plan_with_env("1.32", UNKNOWN_KEY)],
            day("2026-12-06"),
        );
        assert!(w[0].contains("1.32 is not in haseed's table"), "{w:?}");
    }

    #[test]
    fn a_pinned_key_expiring_within_60_days_warns() {
        let site = site(&["master1", "master2"]);
        let plans = [plan_with_env("1.37", PINNED), plan_with_env("1.37", PINNED)];
        let w = warnings(&site, &plans, day("2026-12-06"));
        assert_eq!(w.len(), 1, "one line for both nodes: {w:?}");
        for part in [
            "site pi-k8s, nodes master1, master2",
            "signing key DE15B14486CD377B9E876E1A234654DA9A296436",
            "expires on 2026-12-29, 23 days after the build date 2026-12-06",
        ] {
            assert!(w[0].contains(part), "{part:?} missing: {}", w[0]);
        }
        // Exactly 60 days before still warns; after expiry it says so.
        assert_eq!(warnings(&site, &plans, day("2026-10-30")).len(), 1);
        let w = warnings(&site, &plans, day("2027-01-05"));
        assert!(
            w[0].contains("expired on 2026-12-29 (build date 2027-01-05)"),
            "{w:?}"
        );
    }

    #[test]
    fn a_pinned_key_far_from_expiry_or_unknown_does_not_warn() {
        let site = site(&["master1"]);
        // 61 days before the expiry.
        assert!(warnings(&site, &[plan_with_env("1.37", PINNED)], day("2026-10-29")).is_empty());
        // A key haseed has no expiry for is not judged.
        assert!(warnings(
            &site,
            &[plan_with_env("1.37", UNKNOWN_KEY)],
            day("2026-12-06")
        )
        .is_empty());
        // A plan without Kubernetes packages says nothing.
        assert!(warnings(&site, &[NodePlan::empty("lb1")], day("2030-01-01")).is_empty());
    }

    #[test]
    fn long_node_lists_are_cut() {
        let names = ["a", "b", "c", "d", "e", "f", "g"];
        assert_eq!(node_list(&names), "a, b, c, d, e and 2 more");
        assert_eq!(node_list(&names[..2]), "a, b");
    }
}
