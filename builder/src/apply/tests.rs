use super::*;
use std::path::Path;
use std::process::{Command, Stdio};

/// lb1 of the example site: its state and artifacts.
fn lb1(edit: impl Fn(&str) -> String) -> (NodeState, NodeArtifacts) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/examples/pi-k8s/site.toml");
    let text = edit(&std::fs::read_to_string(&path).expect("example"));
    let inv = crate::inventory::parse(&path, &text).expect("site parses");
    let host = crate::policy::Host::new(None, crate::policy::Limits::default()).expect("host");
    let chain = crate::pipeline::load_chain(&host, &inv).expect("chain");
    let (plans, _) = crate::pipeline::plan(&host, &inv, &chain).expect("plans");
    let a = crate::render::Renderer::new()
        .render_node_with(&inv.site, 0, &plans[0], &inv.node_extras[0])
        .expect("renders");
    (NodeState::of(&inv.site.nodes[0], &plans[0], &a), a)
}

#[test]
fn the_chosen_nodes_render_alone_as_they_do_in_the_whole_site() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/examples/pi-k8s/site.toml");
    let inv = crate::inventory::parse(&path, &std::fs::read_to_string(&path).unwrap()).unwrap();
    let host = crate::policy::Host::new(None, crate::policy::Limits::default()).unwrap();
    let chain = crate::pipeline::load_chain(&host, &inv).unwrap();
    let (plans, _) = crate::pipeline::plan(&host, &inv, &chain).unwrap();
    let all = crate::pipeline::render(&inv, &plans).unwrap();
    let some = crate::pipeline::render_some(&inv, &plans, &[3, 0]).unwrap();
    let files = |a: &NodeArtifacts| -> Vec<(String, String)> {
        a.files
            .iter()
            .map(|f| (f.path.clone(), f.content.clone()))
            .collect()
    };
    assert_eq!(some.len(), 2);
    for (got, want) in some.iter().zip([&all[3], &all[0]]) {
        assert_eq!(got.0, want.0);
        assert_eq!(files(&got.1), files(&want.1), "{}", got.0);
        assert_eq!(got.1.network_config, want.1.network_config);
    }
}

/// What a node holding exactly `state` (all services running) reports.
fn live_of(state: &NodeState, artifacts: &NodeArtifacts) -> Live {
    Live {
        files: state
            .files
            .iter()
            .map(|(p, m)| (p.clone(), Some(m.clone())))
            .collect(),
        contents: artifacts
            .files
            .iter()
            .map(|f| (f.path.clone(), f.content.clone()))
            .collect(),
        packages: state.packages.iter().map(|p| (p.clone(), true)).collect(),
        services: state
            .services
            .iter()
            .map(|u| (u.clone(), ("active".into(), "enabled".into())))
            .collect(),
        ..Live::default()
    }
}

fn rise_7(t: &str) -> String {
    t.replacen("[[service]]", "[[service]]\ncheck = { rise = 7 }", 1)
}

#[test]
fn a_node_as_built_is_in_sync_and_a_changed_file_shows_as_a_diff() {
    let (state, artifacts) = lb1(|t| t.to_string());
    let d = compare(&live_of(&state, &artifacts), &state, &artifacts);
    assert!(d.in_sync && d.files.is_empty(), "{d:?}");

    let (new_state, new_artifacts) = lb1(rise_7);
    let d = compare(&live_of(&state, &artifacts), &new_state, &new_artifacts);
    assert!(!d.in_sync);
    assert_eq!(d.files.len(), 1, "{:?}", d.files);
    assert_eq!(d.files[0].path, crate::render::HAPROXY_CFG);
    let diff = d.files[0].diff.as_deref().expect("a unified diff");
    assert!(
        diff.contains("--- lb1:/etc/haproxy/haproxy.cfg (on the node)")
            && diff
                .lines()
                .any(|l| l.starts_with('-') && l.contains(" rise ") && !l.contains("rise 7"))
            && diff
                .lines()
                .any(|l| l.starts_with('+') && l.contains("rise 7")),
        "{diff}"
    );
    let steps: Vec<&str> = d
        .actions
        .steps
        .iter()
        .map(|s| match s {
            Step::Validate { .. } => "validate",
            Step::Swap => "swap",
            Step::Reload { unit, .. } if unit == "haproxy.service" => "reload haproxy",
            _ => "other",
        })
        .collect();
    assert_eq!(steps, ["validate", "swap", "reload haproxy"]);
}

#[test]
fn missing_packages_stopped_services_and_modes_are_drift() {
    let (state, artifacts) = lb1(|t| t.to_string());
    let mut live = live_of(&state, &artifacts);
    live.packages.insert("keepalived".into(), false);
    live.services.insert(
        "haproxy.service".into(),
        ("failed".into(), "enabled".into()),
    );
    let meta = live.files.get_mut(crate::render::KEEPALIVED_CONF).unwrap();
    meta.as_mut().unwrap().mode = 0o600;
    let d = compare(&live, &state, &artifacts);
    assert!(!d.in_sync);
    assert_eq!(d.packages_missing, ["keepalived"]);
    assert_eq!(
        d.services_not_active,
        [("haproxy.service".to_string(), "failed".to_string())]
    );
    let f = &d.files[0];
    assert_eq!(f.path, crate::render::KEEPALIVED_CONF);
    assert!(f.diff.is_none(), "same content: no text diff");
    assert!(
        f.detail
            .as_deref()
            .unwrap()
            .starts_with("mode 0600 on the node, 0644 in this build"),
        "{f:?}"
    );
    assert!(d.actions.steps.iter().any(|s| matches!(s,
        Step::Restart { unit, why } if unit == "haproxy.service" && why.contains("failed"))));
}

#[test]
fn a_record_from_another_address_is_refused_with_the_reflash_advice() {
    let (state, artifacts) = lb1(|t| t.to_string());
    let mut live = live_of(&state, &artifacts);
    let mut old = state.clone();
    old.address = "192.168.3.231".into();
    live.recorded = Some(Applied {
        haseed: "0".into(),
        site: "pi-k8s".into(),
        build: old.digest(),
        applied_at: "2026-12-01T00:00:00Z".into(),
        state: old,
    });
    let d = compare(&live, &state, &artifacts);
    assert!(!d.in_sync);
    assert!(
        d.refused[0].contains("192.168.3.231 -> 192.168.3.241")
            && d.refused[0].contains("Re-flash"),
        "{:?}",
        d.refused
    );
}

/// The body of an apply of the rise change to lb1, handing `hand_over` over.
fn body(hand_over: &[String], keepalived_too: bool) -> String {
    let (state, artifacts) = lb1(|t| t.to_string());
    let edit = |t: &str| {
        let t = rise_7(t);
        if keepalived_too {
            format!("{t}\n[default_policy]\nadvert_int_ms = 2000\n")
        } else {
            t
        }
    };
    let (new_state, new_artifacts) = lb1(edit);
    let mut d = compare(&live_of(&state, &artifacts), &new_state, &new_artifacts);
    d.holds = hand_over.to_vec();
    apply_body(&d, &new_artifacts, "{}", &new_state.digest(), hand_over)
}

fn position(text: &str, what: &str) -> usize {
    text.find(what)
        .unwrap_or_else(|| panic!("{what:?} not in:\n{text}"))
}

#[test]
fn an_apply_validates_before_the_swap_and_reloads_after_it() {
    let b = body(&[], false);
    let validate = position(
        &b,
        "validate '/etc/haproxy/haproxy.cfg' 'haproxy' '-c' '-f' '{}'",
    );
    let swap = position(&b, "step swap swap '/etc/haproxy/haproxy.cfg' --");
    let reload = position(&b, "act reload 'haproxy.service'");
    let health = position(&b, "step health healthy 'haproxy.service'");
    let finish = position(&b, "finish '");
    assert!(position(&b, "begin") < position(&b, "stage '/etc/haproxy/haproxy.cfg' 644"));
    assert!(validate < swap && swap < reload && reload < health && health < finish);
    assert!(!b.contains("keepalived"), "{b}");
    // The shell accepts it whole.
    let o = Command::new("sh")
        .args(["-n", "-c", &remote::script(&b)])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn the_active_holder_hands_its_vip_over_before_a_keepalived_change() {
    let b = body(&["192.168.3.240".into()], true);
    let hand = position(&b, "step hand-over hand_over '192.168.3.240'");
    let swap = position(&b, "step swap swap");
    let start = position(&b, "act start 'keepalived.service'");
    assert!(hand < swap && swap < start, "{b}");
    assert!(!b.contains("act reload 'keepalived.service'"), "{b}");
    assert!(!b.contains("act restart 'keepalived.service'"), "{b}");
    // A backup (holding nothing) is restarted in place: the advert interval is also in
    // keepalived's drop-in (its stop waits for the peer), and a drop-in takes a restart.
    let b = body(&[], true);
    assert!(b.contains("act restart 'keepalived.service'"), "{b}");
    assert!(!b.contains("hand_over") && !b.contains("act start"), "{b}");
}

/// Runs `body` with node.sh in `dir` as the node's /var/lib/haseed, as the node would (sh -s,
/// the script on stdin).
fn node(dir: &Path, body: &str) -> (remote::Reply, String) {
    let mut child = Command::new("sh")
        .arg("-s")
        .env("HASEED_STATE_DIR", dir.join("state"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(remote::script(body).as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let reply = remote::Reply {
        lines: out
            .lines()
            .filter_map(|l| l.strip_prefix("@haseed "))
            .map(|l| l.split(' ').map(str::to_string).collect())
            .collect(),
        status: o.status.code(),
    };
    (
        reply,
        format!("{out}{}", String::from_utf8_lossy(&o.stderr)),
    )
}

fn stage_line(path: &Path, content: &str) -> String {
    format!(
        "stage {} 640 \"$(id -un):$(id -gn)\" <<'HASEED_B64_END' || {{ say step stage failed 0; fail; }}\n{}\nHASEED_B64_END\n",
        quote(&path.display().to_string()),
        b64(content)
    )
}

#[test]
fn node_sh_reports_what_the_reader_parses() {
    let tmp = tempfile::tempdir().unwrap();
    let same = tmp.path().join("same.cfg");
    let other = tmp.path().join("other.cfg");
    std::fs::write(&same, "a\n").unwrap();
    std::fs::write(&other, "node's\n").unwrap();
    let sha_a = crate::policy::sha256_hex(b"a\n");
    let mut files = BTreeMap::new();
    files.insert(same.display().to_string(), sha_a.clone());
    files.insert(other.display().to_string(), sha_a.clone());
    files.insert(
        tmp.path().join("absent").display().to_string(),
        sha_a.clone(),
    );
    let (reply, all) = node(
        tmp.path(),
        &state_body(&files, &BTreeSet::new(), &BTreeSet::new(), &[]),
    );
    let mut live = Live::default();
    parse_state(&reply, &mut live).unwrap();
    assert!(live.recorded.is_none(), "{all}");
    let meta = live.files[&same.display().to_string()].clone().unwrap();
    assert_eq!(meta.sha256, sha_a);
    assert_eq!(meta.mode, 0o666 & !umask(), "{all}");
    assert!(live.files[&tmp.path().join("absent").display().to_string()].is_none());
    // Only the differing file's content comes back.
    assert_eq!(live.contents.len(), 1, "{all}");
    assert_eq!(live.contents[&other.display().to_string()], "node's\n");
}

fn umask() -> u32 {
    let o = Command::new("sh").args(["-c", "umask"]).output().unwrap();
    u32::from_str_radix(String::from_utf8_lossy(&o.stdout).trim(), 8).unwrap()
}

#[test]
fn a_failed_validation_swaps_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("etc/app.cfg");
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    std::fs::write(&cfg, "old\n").unwrap();
    let body = format!(
        "begin\n{}validate {} grep -q never '{{}}'\nstep swap swap {} --\nfinish x <<'HASEED_B64_END'\n{}\nHASEED_B64_END\n",
        stage_line(&cfg, "new\n"),
        quote(&cfg.display().to_string()),
        quote(&cfg.display().to_string()),
        b64("{}")
    );
    let (reply, all) = node(tmp.path(), &body);
    let (steps, _, rolled_back, done) = parse_steps(&reply);
    assert!(!done && !rolled_back, "{all}");
    let failed: Vec<&str> = steps
        .iter()
        .filter(|s| !s.ok)
        .map(|s| s.step.as_str())
        .collect();
    assert_eq!(failed, [format!("validate {}", cfg.display())], "{all}");
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), "old\n");
    let left: Vec<_> = std::fs::read_dir(cfg.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["app.cfg"], "the staged copy is removed");
    assert!(!tmp.path().join("state/applied.json").exists());
}

#[test]
fn a_failure_after_the_swap_puts_every_file_back() {
    let tmp = tempfile::tempdir().unwrap();
    let etc = tmp.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    let (a, b, gone) = (etc.join("a.cfg"), etc.join("new.cfg"), etc.join("old.cfg"));
    std::fs::write(&a, "old a\n").unwrap();
    std::fs::write(&gone, "removed by the build\n").unwrap();
    let q = |p: &Path| quote(&p.display().to_string());
    let body = format!(
        "begin\n{}{}step swap swap {} {} -- {}\nstep health false\nfinish x <<'HASEED_B64_END'\n{}\nHASEED_B64_END\n",
        stage_line(&a, "new a\n"),
        stage_line(&b, "new file\n"),
        q(&a),
        q(&b),
        q(&gone),
        b64("{}")
    );
    let (reply, all) = node(tmp.path(), &body);
    let (steps, _, rolled_back, done) = parse_steps(&reply);
    assert!(!done && rolled_back, "{all}");
    assert!(steps.iter().any(|s| s.step == "swap" && s.ok), "{all}");
    assert_eq!(std::fs::read_to_string(&a).unwrap(), "old a\n");
    assert!(!b.exists(), "a file the apply added is gone again");
    assert_eq!(
        std::fs::read_to_string(&gone).unwrap(),
        "removed by the build\n"
    );
    assert!(!tmp.path().join("state/txn").exists(), "{all}");

    // The same apply without the failure: new files, the record, no journal.
    let body = body.replace("step health false\n", "");
    let (reply, all) = node(tmp.path(), &body);
    let (_, _, _, done) = parse_steps(&reply);
    assert!(done, "{all}");
    assert_eq!(std::fs::read_to_string(&a).unwrap(), "new a\n");
    assert_eq!(std::fs::read_to_string(&b).unwrap(), "new file\n");
    assert!(!gone.exists());
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("state/applied.json")).unwrap(),
        "{}"
    );
}

#[test]
fn an_apply_killed_mid_swap_is_rolled_back_by_the_next_run() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a.cfg");
    std::fs::write(&a, "old\n").unwrap();
    // SIGKILL: no trap runs, the journal stays.
    let body = format!(
        "begin\n{}step swap swap {} --\nkill -KILL $$\n",
        stage_line(&a, "new\n"),
        quote(&a.display().to_string())
    );
    let (_, all) = node(tmp.path(), &body);
    assert_eq!(std::fs::read_to_string(&a).unwrap(), "new\n", "{all}");
    let (reply, all) = node(tmp.path(), "read_applied\n");
    let mut live = Live::default();
    parse_state(&reply, &mut live).unwrap();
    assert_eq!(
        live.interrupted,
        Some(vec![a.display().to_string()]),
        "diff says an apply was cut off: {all}"
    );
    let (reply, all) = node(tmp.path(), "begin\n");
    assert!(reply.lines.iter().any(|l| l[0] == "recovered"), "{all}");
    assert_eq!(std::fs::read_to_string(&a).unwrap(), "old\n");
}

#[test]
fn a_signal_mid_swap_puts_the_old_files_back_at_once() {
    // Ctrl-C on the build machine (INT), the connection lost (HUP from sshd, PIPE on the next
    // write), a stop (TERM): node.sh's trap rolls back before the shell ends.
    for signal in ["TERM", "HUP", "INT", "PIPE"] {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a.cfg");
        std::fs::write(&a, "old\n").unwrap();
        let body = format!(
            "begin\n{}step swap swap {} --\nkill -{signal} $$\nsleep 5\nsay step after-the-signal ok 0\n",
            stage_line(&a, "new\n"),
            quote(&a.display().to_string())
        );
        let (reply, all) = node(tmp.path(), &body);
        assert_eq!(
            std::fs::read_to_string(&a).unwrap(),
            "old\n",
            "{signal}: {all}"
        );
        let (steps, _, rolled_back, done) = parse_steps(&reply);
        assert!(rolled_back && !done, "{signal}: {all}");
        assert!(
            steps.iter().any(|s| s.step == "interrupted" && !s.ok),
            "{signal}: {all}"
        );
        assert!(
            !steps.iter().any(|s| s.step == "after-the-signal"),
            "{signal}: {all}"
        );
        // Nothing is left for the next run or diff to recover.
        let (reply, all) = node(tmp.path(), "read_applied\n");
        let mut live = Live::default();
        parse_state(&reply, &mut live).unwrap();
        assert_eq!(live.interrupted, None, "{signal}: {all}");
    }
}

#[test]
fn a_second_apply_is_refused_while_one_holds_the_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let mut holder = Command::new("flock")
        .arg(state.join("apply.lock"))
        .args(["sleep", "30"])
        .spawn()
        .expect("flock (util-linux) runs");
    std::thread::sleep(Duration::from_millis(300));
    let (reply, all) = node(tmp.path(), "begin\nsay 'done' x\n");
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(reply.status, Some(75), "{all}");
    let (steps, output, _, done) = parse_steps(&reply);
    assert!(!done && steps[0].step == "lock" && !steps[0].ok, "{all}");
    assert!(
        output.unwrap().contains("another haseed apply holds"),
        "{all}"
    );
}

#[test]
fn a_node_without_room_for_the_staged_files_is_refused_before_anything_is_staged() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a.cfg");
    std::fs::write(&a, "old\n").unwrap();
    // More than any disk holds: df's real figure is below it.
    let body = format!(
        "begin\nfree_space 4000000000000\n{}step swap swap {} --\n",
        stage_line(&a, "new\n"),
        quote(&a.display().to_string())
    );
    let (reply, all) = node(tmp.path(), &body);
    let (steps, output, _, done) = parse_steps(&reply);
    assert!(!done, "{all}");
    assert_eq!(steps.len(), 1, "{all}");
    assert!(steps[0].step == "free-space" && !steps[0].ok, "{all}");
    assert!(
        output
            .unwrap()
            .contains("KiB free; this apply needs 4000000000000 KiB"),
        "{all}"
    );
    assert_eq!(std::fs::read_to_string(&a).unwrap(), "old\n");
}

#[test]
fn an_address_on_lo_alone_is_not_held() {
    // haseed's keepalived drop-in puts every VIP on lo (a /32) on every holder: only the
    // VRRP holder has it on its interface.
    let tmp = tempfile::tempdir().unwrap();
    let (reply, all) = node(tmp.path(), "vip_state 127.0.0.1\n");
    let mut live = Live::default();
    parse_state(&reply, &mut live).unwrap();
    assert_eq!(live.vips.get("127.0.0.1"), Some(&false), "{all}");
}

#[test]
fn each_vip_is_held_by_the_node_that_says_so() {
    let (state, artifacts) = lb1(|t| t.to_string());
    let mut a = compare(&live_of(&state, &artifacts), &state, &artifacts);
    let mut b = compare(&live_of(&state, &artifacts), &state, &artifacts);
    a.holds = vec!["192.168.3.240".into()];
    b.holds = vec!["192.168.3.240".into(), "192.168.3.250".into()];
    let held = vip_holders(&[4, 7], &[&a, &b]);
    assert_eq!(held.get("192.168.3.240"), Some(&4), "the first to say so");
    assert_eq!(held.get("192.168.3.250"), Some(&7));
    assert_eq!(held.get("192.168.3.1"), None);
}
