//! What the lab runs for each holder, decided before anything starts: the
//! plan's hooks and checks recognised (`hooks.rs`) or the site refused; and
//! running the recognised hooks in the sandbox.

use super::*;

/// Runs hooks in order, each bounded to 10 s, in the sandbox and namespace
/// `net`, with the node's state paths under `home`; a failing one stops the
/// list unless it carries systemd's `-`.
pub(super) fn run_hooks(
    sandbox: &Sandbox,
    net: &NetNs,
    home: &Path,
    hooks: &[(Hook, bool)],
    what: &str,
) -> anyhow::Result<()> {
    for (hook, ignore_failure) in hooks {
        let argv = hook.lab_argv(home);
        let words: Vec<&str> = argv.iter().map(String::as_str).collect();
        let mut child = sandbox
            .command(net, words[0], &words[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("{what}: running {argv:?}"))?;
        let status = wait_bounded(&mut child, what, &argv)?;
        if !status.success() && !ignore_failure {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            bail!("{what}: {argv:?} failed ({status}): {}", err.trim());
        }
    }
    Ok(())
}

/// Waits for a hook or a checking tool the lab started, at most 10 s; one that runs longer is
/// killed and named in the error.
pub(super) fn wait_bounded(
    child: &mut Child,
    what: &str,
    argv: &[impl std::fmt::Debug],
) -> anyhow::Result<std::process::ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what}: {argv:?} ran longer than 10 s");
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// haproxy.cfg for the lab: the admin socket under `home`, and haproxy left
/// as uid 0 (in the sandbox, with its reduced capabilities) instead of
/// switching to the `haproxy` user: the node-scoped `pgrep` check compares
/// network namespaces through `/proc/PID/ns`, which a checker without
/// `CAP_SYS_PTRACE` may read only for processes of its own uid.
pub(super) fn lab_haproxy_cfg(text: &str, home: &Path) -> String {
    text.lines()
        .filter(|l| !matches!(l.trim(), "user haproxy" | "group haproxy"))
        .map(|l| {
            l.replace(
                "/run/haproxy/admin.sock",
                &format!("{}/admin.sock", home.display()),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// What the lab runs for one holder, decided before anything starts.
#[derive(Clone)]
pub(super) struct Setup {
    pub(super) node: u32,
    /// Its plan: the lab renders its keepalived section again, with the
    /// lab's own commands for the recognised checks.
    pub(super) plan: NodePlan,
    /// Per keepalived script, in plan order.
    pub(super) checks: Vec<Check>,
    /// haproxy.cfg as built (it names no program to run).
    pub(super) haproxy_cfg: String,
    /// The node's build: what `haseed apply` compares (config-change scenarios).
    pub(super) artifacts: NodeArtifacts,
    pub(super) haproxy: ServiceHooks,
    pub(super) keepalived: ServiceHooks,
    /// The watcher of haproxy's monitor URI, when the plan enables it
    /// (started after haproxy, as its unit orders it).
    pub(super) watch: Option<Watch>,
}

impl Setup {
    /// keepalived.conf for the lab: the host renders it from the typed plan,
    /// every check replaced by the argv the lab renders for it and every
    /// track file moved under `home`.
    pub(super) fn keepalived_conf(
        &self,
        site: &Site,
        home: &Path,
        anchor: u32,
    ) -> anyhow::Result<String> {
        let mut plan = self.plan.clone();
        let k = plan
            .keepalived
            .as_mut()
            .ok_or_else(|| anyhow!("no keepalived section"))?;
        for (s, c) in k.scripts.iter_mut().zip(&self.checks) {
            s.command = c.lab_argv(anchor);
        }
        for t in &mut k.track_files {
            t.path = hooks::lab_state_path(home, &t.path)
                .ok_or_else(|| anyhow!("track file {} is not haseed's", t.path))?;
        }
        plan.files.clear();
        let art = crate::render::Renderer::new().render_node(site, self.node, &plan, &[])?;
        art.files
            .into_iter()
            .find(|f| f.path == crate::render::KEEPALIVED_CONF)
            .map(|f| f.content)
            .ok_or_else(|| anyhow!("no keepalived.conf rendered"))
    }
}

/// Reads every holder's drop-ins and keepalived checks and recognises each
/// command as one the lab knows (`hooks.rs`); refuses the site, listing
/// every other command, before anything is created or started.
pub(super) fn vet(
    topo: &Topology,
    plans: &[NodePlan],
    nodes: &[(String, NodeArtifacts)],
) -> anyhow::Result<Vec<Setup>> {
    let mut refusals: Vec<Refusal> = Vec::new();
    let mut setups = Vec::new();
    for m in &topo.holders {
        let node = m
            .node
            .ok_or_else(|| anyhow!("holder {} is no node", m.name))?;
        let plan = plans
            .get(node)
            .ok_or_else(|| anyhow!("node {} has no plan", m.name))?;
        let art = nodes
            .iter()
            .find(|(n, _)| *n == m.name)
            .map(|(_, a)| a)
            .ok_or_else(|| anyhow!("node {} was not rendered", m.name))?;
        let haproxy_cfg = art
            .files
            .iter()
            .find(|f| f.path == crate::render::HAPROXY_CFG)
            .map(|f| f.content.clone())
            .ok_or_else(|| {
                anyhow!(
                    "node {} has no haproxy.cfg: it is not a load balancer",
                    m.name
                )
            })?;
        let mut dropins: Vec<_> = art
            .files
            .iter()
            .filter(|f| f.path.starts_with("/etc/systemd/system/"))
            .collect();
        dropins.sort_by(|a, b| a.path.cmp(&b.path));
        let (mut h_hooks, mut k_hooks) = (Hooks::default(), Hooks::default());
        for f in dropins {
            let into = match f.path.as_str() {
                "/etc/systemd/system/haproxy.service"
                | "/etc/systemd/system/keepalived.service" => {
                    refusals.push(Refusal {
                        node: m.name.clone(),
                        place: f.path.clone(),
                        command: String::new(),
                        why: "replaces the distribution's unit, which the lab does not emulate"
                            .into(),
                    });
                    continue;
                }
                p if p.starts_with("/etc/systemd/system/haproxy.service.d/") => &mut h_hooks,
                p if p.starts_with("/etc/systemd/system/keepalived.service.d/") => &mut k_hooks,
                _ => continue,
            };
            if let Err(e) = into.add_dropin(&f.content, &f.path) {
                refusals.push(Refusal {
                    node: m.name.clone(),
                    place: f.path.clone(),
                    command: String::new(),
                    why: e,
                });
            }
        }
        let watch = vet_watch(&m.name, plan, art, &mut refusals);
        let haproxy = hooks::recognise_hooks(&m.name, &h_hooks, &mut refusals);
        let keepalived = hooks::recognise_hooks(&m.name, &k_hooks, &mut refusals);
        let k = plan
            .keepalived
            .as_ref()
            .ok_or_else(|| anyhow!("node {} has no keepalived section", m.name))?;
        let mut checks = Vec::new();
        for (i, s) in k.scripts.iter().enumerate() {
            match Check::recognise(&s.command) {
                Ok(c) => checks.push(c),
                Err(why) => refusals.push(Refusal {
                    node: m.name.clone(),
                    place: format!("keepalived vrrp_script {} (scripts[{i}])", s.name),
                    command: s.command.join(" "),
                    why,
                }),
            }
        }
        for (i, t) in k.track_files.iter().enumerate() {
            if hooks::lab_state_path(Path::new("/"), &t.path).is_none() {
                refusals.push(Refusal {
                    node: m.name.clone(),
                    place: format!("keepalived vrrp_track_file {} (track_files[{i}])", t.name),
                    command: t.path.clone(),
                    why: format!(
                        "not a file of haseed's state directories ({})",
                        hooks::STATE_DIRS.join(", ")
                    ),
                });
            }
        }
        for inst in &k.instances {
            for (key, cmd) in [
                ("notify_master", &inst.notify_master),
                ("notify_backup", &inst.notify_backup),
                ("notify_fault", &inst.notify_fault),
            ] {
                if let Some(cmd) = cmd {
                    refusals.push(Refusal {
                        node: m.name.clone(),
                        place: format!("keepalived vrrp_instance {} {key}", inst.name),
                        command: cmd.join(" "),
                        why: "the lab runs no notify command".into(),
                    });
                }
            }
        }
        setups.push(Setup {
            node: node as u32,
            plan: plan.clone(),
            checks,
            haproxy_cfg,
            artifacts: art.clone(),
            haproxy,
            keepalived,
            watch,
        });
    }
    if refusals.is_empty() {
        return Ok(setups);
    }
    let list: Vec<String> = refusals.iter().map(|r| format!("  - {r}")).collect();
    bail!(
        "haseed lab refuses this site: on this machine, as root, it runs only the hooks and \
         checks haseed's default policy writes (hooks that mark haproxy up or down in its track \
         file, keep or remove the VIPs; checks that ask for haproxy's process or its monitor \
         URI), and these are none of them:\n{}\nNothing was started. A plan with commands of \
         its own is tested where they belong: on a node under real systemd (a VM or a spare \
         machine), not on the build host.",
        list.join("\n")
    )
}

/// The watcher, if an enabled `haseed-*.service` unit of the plan starts
/// [`hooks::WATCH_SCRIPT_PATH`]: its `ExecStart=` recognised, and the plan's
/// script exactly the host's own copy (which is what the lab runs). Other
/// haseed units do nothing a load balancer's failover depends on; the lab
/// leaves them out, as before.
fn vet_watch(
    node: &str,
    plan: &NodePlan,
    art: &NodeArtifacts,
    refusals: &mut Vec<Refusal>,
) -> Option<Watch> {
    let mut found = None;
    for f in &art.files {
        let Some(unit) = f
            .path
            .strip_prefix("/etc/systemd/system/")
            .filter(|u| u.starts_with("haseed-") && u.ends_with(".service"))
        else {
            continue;
        };
        if !plan.services.iter().any(|s| s == unit) {
            continue;
        }
        let mut h = Hooks::default();
        if h.add_dropin(&f.content, &f.path).is_err() {
            continue;
        }
        for c in h
            .start
            .iter()
            .filter(|c| c.argv.first().map(String::as_str) == Some(hooks::WATCH_SCRIPT_PATH))
        {
            let mut refuse = |why: String| {
                refusals.push(Refusal {
                    node: node.to_string(),
                    place: format!("{} ExecStart=", c.at),
                    command: c.argv.join(" "),
                    why,
                })
            };
            let script = art
                .files
                .iter()
                .find(|s| s.path == hooks::WATCH_SCRIPT_PATH);
            match (Watch::recognise(&c.argv), script) {
                (Err(why), _) => refuse(why),
                (_, None) => refuse(format!("the plan writes no {}", hooks::WATCH_SCRIPT_PATH)),
                (Ok(_), Some(s)) if s.content != hooks::WATCH_SCRIPT => refuse(format!(
                    "{} is not the default policy's script",
                    hooks::WATCH_SCRIPT_PATH
                )),
                (Ok(_), Some(_)) if found.is_some() => refuse("a second watcher".into()),
                (Ok(w), Some(_)) => found = Some(w),
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::RenderedFile;

    fn file(path: &str, content: &str) -> RenderedFile {
        RenderedFile {
            path: path.into(),
            mode: 0o644,
            owner: "root:root".into(),
            content: content.into(),
        }
    }

    #[test]
    fn the_watcher_runs_only_as_the_default_policy_wrote_it() {
        let unit_path = "/etc/systemd/system/haseed-haproxy-watch.service";
        let exec = "[Service]\nExecStart=/usr/local/sbin/haseed-haproxy-watch 8404 /alive \
                    /var/lib/haseed/haproxy-unhealthy 100 200 2 10.0.0.2\n";
        let vet_one = |unit: &str, script: Option<&str>, enabled: bool| {
            let mut plan = crate::check::fixture::lb_plan(&crate::check::fixture::site(), 0);
            if enabled {
                plan.services.push("haseed-haproxy-watch.service".into());
            }
            let mut files = vec![file(unit_path, unit)];
            if let Some(s) = script {
                files.push(file(hooks::WATCH_SCRIPT_PATH, s));
            }
            let art = NodeArtifacts {
                user_data: String::new(),
                meta_data: String::new(),
                network_config: String::new(),
                files,
            };
            let mut refusals = Vec::new();
            let w = vet_watch("lb1", &plan, &art, &mut refusals);
            (w, refusals)
        };
        let (w, r) = vet_one(exec, Some(hooks::WATCH_SCRIPT), true);
        assert!(r.is_empty(), "{r:?}");
        assert_eq!(w.expect("the watcher").port, 8404);
        // Not enabled: the node does not run it, nor does the lab.
        let (w, r) = vet_one(exec, Some(hooks::WATCH_SCRIPT), false);
        assert!(w.is_none() && r.is_empty());
        // The plan's script differs from the host's: refused, named.
        let (w, r) = vet_one(exec, Some("#!/bin/sh\nid > /tmp/x\n"), true);
        assert!(w.is_none());
        assert!(
            r[0].why.contains("not the default policy's script"),
            "{r:?}"
        );
        assert!(r[0].to_string().starts_with(
            "node lb1: /etc/systemd/system/haseed-haproxy-watch.service line 2 ExecStart="
        ));
        // No script at all, or other arguments: refused.
        let (_, r) = vet_one(exec, None, true);
        assert!(r[0].why.contains("writes no"), "{r:?}");
        let other = exec.replace("100 200 2", "100 200 2; id");
        let (_, r) = vet_one(&other, Some(hooks::WATCH_SCRIPT), true);
        assert_eq!(r.len(), 1, "{r:?}");
    }
}
