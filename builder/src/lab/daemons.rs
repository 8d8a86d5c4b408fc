//! The lab itself: its namespaces and links, the backends, haproxy and
//! keepalived per holder with their hooks (in the sandbox), watching who
//! holds the VIP, and tearing everything down (the `Lab` guard).

use super::*;

/// A daemon the lab started, watched by a thread that runs its
/// `ExecStopPost=` hooks however it ends (as systemd does).
pub(super) struct Daemon {
    pub(super) pid: i32,
    pub(super) watcher: Option<JoinHandle<()>>,
}

/// The lab's guard: everything it created, removed on drop.
pub(super) struct Lab {
    pub(super) namespaces: Vec<String>,
    pub(super) dir: tempfile::TempDir,
    /// Per holder: haproxy and keepalived.
    pub(super) haproxy: Vec<Option<Daemon>>,
    pub(super) keepalived: Vec<Option<Daemon>>,
    /// Per holder: the watcher of haproxy's monitor URI, when its plan has
    /// one (`hooks::Watch`).
    pub(super) watchers: Vec<Option<Child>>,
    /// Per holder: what the lab runs for it (recognised hooks and checks), as it runs now.
    pub(super) setups: Vec<Setup>,
    /// Per holder: the site's own build (config-change scenarios go back to it).
    pub(super) base: Vec<Setup>,
    /// The config-change scenarios' builds, per change, per holder.
    pub(super) changed: Vec<(Change, Vec<Setup>)>,
    /// Per holder: haproxy's and keepalived's `ExecStopPost=` as the unit has them now
    /// (a daemon-reload changes them; systemd runs the current ones when the daemon ends).
    pub(super) stop_post: Vec<[Arc<Mutex<Vec<LabHook>>>; 2]>,
    /// Where every process of a node runs (`sandbox.rs`).
    pub(super) sandbox: Arc<Sandbox>,
    /// The namespaces' descriptors, by name, for the sandbox's processes.
    pub(super) netns: Vec<(String, Arc<NetNs>)>,
    /// Set while the lab tears down: watchers then skip the stop hooks.
    pub(super) closing: Arc<AtomicBool>,
    /// Backend servers: (node, address, port) and, while it runs, its stop
    /// flag and thread.
    pub(super) backends: Vec<BackendServer>,
    /// Per holder: a process that lives in its namespace for the lab's
    /// whole run (`Check::lab_argv` scopes `pgrep` with it).
    pub(super) anchors: Vec<Child>,
    /// Per holder: its interface's hardware address (for the ARP check).
    pub(super) macs: Vec<Option<String>>,
    /// What `settle` found: a client cut off by a stale ARP entry.
    pub(super) settle_findings: Vec<String>,
    /// Per holder: its VRRP instance for the VIP (keepalived's log names
    /// its states by it).
    pub(super) instances: Vec<String>,
    /// Set while `settle_between` runs.
    pub(super) no_fault: bool,
    pub(super) epoch: Instant,
    pub(super) vip: Ipv4Addr,
    /// How long a probe waits for its answer: `PROBE_TIMEOUT`, longer only
    /// where a scenario freezes a node on purpose (`stall`).
    pub(super) probe_timeout: Duration,
    /// The backends' TLS (`probe::tls_config`): haproxy's HTTPS `/readyz`
    /// check of the API servers.
    pub(super) tls: Arc<rustls::ServerConfig>,
}

impl Lab {
    pub(super) fn new(topo: &Topology, setups: Vec<Setup>) -> anyhow::Result<Lab> {
        let dir = tempfile::Builder::new()
            .prefix("haseed-lab-")
            .tempdir()
            .context("creating the lab's directory")?;
        let sandbox = Arc::new(Sandbox::new(dir.path())?);
        let n = topo.holders.len();
        Ok(Lab {
            namespaces: Vec::new(),
            dir,
            haproxy: (0..n).map(|_| None).collect(),
            keepalived: (0..n).map(|_| None).collect(),
            watchers: (0..n).map(|_| None).collect(),
            base: setups.clone(),
            changed: Vec::new(),
            stop_post: (0..n).map(|_| Default::default()).collect(),
            setups,
            sandbox,
            netns: Vec::new(),
            closing: Arc::new(AtomicBool::new(false)),
            backends: Vec::new(),
            anchors: Vec::new(),
            macs: Vec::new(),
            settle_findings: Vec::new(),
            instances: Vec::new(),
            no_fault: false,
            epoch: Instant::now(),
            vip: topo.vip,
            probe_timeout: PROBE_TIMEOUT,
            tls: tls_config()?,
        })
    }

    pub(super) fn add_ns(&mut self, ns: &str) -> anyhow::Result<()> {
        ip(&["netns", "add", ns])?;
        self.namespaces.push(ns.to_string());
        self.netns
            .push((ns.to_string(), Arc::new(NetNs::open(ns)?)));
        ip(&["-n", ns, "link", "set", "lo", "up"])
    }

    pub(super) fn net(&self, ns: &str) -> anyhow::Result<Arc<NetNs>> {
        self.netns
            .iter()
            .find(|(n, _)| n == ns)
            .map(|(_, f)| f.clone())
            .ok_or_else(|| anyhow!("namespace {ns} is not the lab's"))
    }

    /// `argv` in the sandbox, in namespace `ns`.
    pub(super) fn command(&self, ns: &str, argv: &[&str]) -> anyhow::Result<Command> {
        let mut c = self.sandbox.command(&*self.net(ns)?, argv[0], &argv[1..]);
        c.stdin(Stdio::null());
        Ok(c)
    }

    /// Namespaces, links, backends, then haproxy and keepalived on every
    /// holder (keepalived after haproxy, as the drop-in orders it).
    pub(super) fn build(&mut self, site: &Site, topo: &Topology) -> anyhow::Result<()> {
        let br = topo.bridge_ns.clone();
        self.add_ns(&br)?;
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &br, "link", "set", "br0", "up"])?;
        let members: Vec<Member> = topo
            .holders
            .iter()
            .cloned()
            .chain(topo.backends.iter().map(|(m, _)| m.clone()))
            .chain([topo.client.clone()])
            .collect();
        for (k, m) in members.iter().enumerate() {
            interrupted()?;
            self.add_ns(&m.ns)?;
            let port = format!("p{k}");
            ip(&[
                "-n",
                &br,
                "link",
                "add",
                &port,
                "type",
                "veth",
                "peer",
                "name",
                &m.interface,
                "netns",
                &m.ns,
            ])?;
            ip(&["-n", &br, "link", "set", &port, "master", "br0", "up"])?;
            ip(&[
                "-n",
                &m.ns,
                "addr",
                "add",
                &format!("{}/{}", m.address, topo.prefix),
                "dev",
                &m.interface,
            ])?;
            ip(&["-n", &m.ns, "link", "set", &m.interface, "up"])?;
        }
        self.macs = topo
            .holders
            .iter()
            .map(|h| mac_of(&h.ns, &h.interface))
            .collect();
        for (m, ports) in &topo.backends {
            for &port in ports {
                self.backends.push(BackendServer {
                    member: m.clone(),
                    port,
                    running: None,
                    draining: Arc::new(AtomicBool::new(false)),
                });
                self.start_backend(self.backends.len() - 1)?;
            }
        }
        // The configurations, rendered again by the host with the lab's
        // checks and state paths.
        for (h, m) in topo.holders.iter().enumerate() {
            let home = self.dir.path().join(&m.name);
            fs::create_dir_all(&home)?;
            fs::write(
                home.join("haproxy.cfg"),
                lab_haproxy_cfg(&self.setups[h].haproxy_cfg, &home),
            )?;
            // A node's `pgrep` sees its own processes only; the lab's
            // namespaces share one process table, so scope it to the node's
            // network namespace (through a process that lives there).
            let anchor = self.anchor(&m.ns)?;
            let conf = self.setups[h].keepalived_conf(site, &home, anchor)?;
            fs::write(home.join("keepalived.conf"), conf)?;
        }
        for h in 0..topo.holders.len() {
            self.start_haproxy(topo, h)?;
        }
        for h in 0..topo.holders.len() {
            self.start_watcher(topo, h)?;
        }
        for h in 0..topo.holders.len() {
            self.start_keepalived(topo, h)?;
        }
        Ok(())
    }

    /// Starts holder `h`'s watcher, if its plan has one: the host's own copy
    /// of the script (`hooks::WATCH_SCRIPT`, the plan's was checked equal to
    /// it), in the sandbox and the node's namespace, its track file under
    /// the node's lab directory.
    pub(super) fn start_watcher(&mut self, topo: &Topology, h: usize) -> anyhow::Result<()> {
        let Some(w) = self.setups[h].watch.clone() else {
            return Ok(());
        };
        let m = &topo.holders[h];
        let home = self.dir.path().join(&m.name);
        let script = home.join("haseed-haproxy-watch");
        fs::write(&script, hooks::WATCH_SCRIPT)?;
        let argv = w.lab_argv(&script, &home);
        let words: Vec<&str> = argv.iter().map(String::as_str).collect();
        let child = self
            .command(&m.ns, &words)?
            .stdout(Stdio::null())
            .stderr(Stdio::from(fs::File::create(home.join("watch.log"))?))
            .spawn()
            .with_context(|| format!("starting the haproxy watcher for {}", m.name))?;
        self.watchers[h] = Some(child);
        Ok(())
    }

    /// Starts a process that only waits inside `ns`; its pid names the
    /// namespace to `pgrep --ns`.
    pub(super) fn anchor(&mut self, ns: &str) -> anyhow::Result<u32> {
        // In the namespace once spawn returns: the sandbox joins it before exec.
        let child = self
            .command(ns, &["sleep", "86400"])?
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting a process in namespace {ns}"))?;
        let pid = child.id();
        self.anchors.push(child);
        Ok(pid)
    }

    pub(super) fn start_backend(&mut self, i: usize) -> anyhow::Result<()> {
        let b = &mut self.backends[i];
        let stop = Arc::new(AtomicBool::new(false));
        let (ns, addr, port) = (b.member.ns.clone(), b.member.address, b.port);
        let (tx, rx) = std::sync::mpsc::channel();
        let flags = Flags {
            stop: stop.clone(),
            draining: b.draining.clone(),
            tls: self.tls.clone(),
        };
        let t = thread::spawn(move || backend(&ns, addr, port, flags, tx));
        b.running = Some((stop, t));
        rx.recv_timeout(Duration::from_secs(5))
            .map_err(|_| anyhow!("backend {} port {port} did not start", b.member.name))?
            .map_err(|e| anyhow!("backend {} port {port}: {e}", b.member.name))
    }

    /// Stops a backend server: its port then refuses connections.
    pub(super) fn stop_backend(&mut self, i: usize) {
        if let Some((stop, t)) = self.backends[i].running.take() {
            stop.store(true, Ordering::SeqCst);
            let _ = t.join();
        }
    }

    /// Runs hooks of holder `h` in its namespace, in the sandbox.
    pub(super) fn run_hooks(
        &self,
        topo: &Topology,
        h: usize,
        hooks: &[(Hook, bool)],
        what: &str,
    ) -> anyhow::Result<()> {
        let m = &topo.holders[h];
        run_hooks(
            &self.sandbox,
            &*self.net(&m.ns)?,
            &self.dir.path().join(&m.name),
            hooks,
            &format!("{} {what}", m.name),
        )
    }

    pub(super) fn start_haproxy(&mut self, topo: &Topology, h: usize) -> anyhow::Result<()> {
        let m = &topo.holders[h];
        let home = self.dir.path().join(&m.name);
        let hooks = self.setups[h].haproxy.clone();
        self.run_hooks(topo, h, &hooks.start_pre, "haproxy ExecStartPre")?;
        let cfg = home.join("haproxy.cfg");
        // Master-worker, as Debian's haproxy.service runs it (`ExecStart=/usr/sbin/haproxy -Ws
        // -f $CONFIG -p $PIDFILE $EXTRAOPTS`, debian/haproxy.service of the haproxy package):
        // the master stays in the foreground and a reload (SIGUSR2) re-executes it with the
        // new file; the new worker takes the listeners over (`-x sockpair@`) and the old one
        // finishes its connections.
        let child = self
            .command(&m.ns, &["haproxy", "-Ws", "-f", path_str(&cfg)?])?
            .stdout(Stdio::null())
            .stderr(Stdio::from(fs::File::create(home.join("haproxy.log"))?))
            .spawn()
            .with_context(|| format!("starting haproxy for {}", m.name))?;
        // haproxy is ready within milliseconds; systemd runs ExecStartPost
        // once it reports ready.
        thread::sleep(Duration::from_millis(200));
        *self.stop_post[h][0].lock().expect("no panic holds it") = hooks.stop_post.clone();
        let d = self.watch(topo, h, child, self.stop_post[h][0].clone(), "haproxy")?;
        if !pid_alive(d.pid) {
            bail!(
                "haproxy for {} exited at start: {}",
                m.name,
                fs::read_to_string(home.join("haproxy.log")).unwrap_or_default()
            );
        }
        self.haproxy[h] = Some(d);
        self.run_hooks(topo, h, &hooks.start_post, "haproxy ExecStartPost")
    }

    /// haproxy's processes on holder `h`: its master (the lab's child) and the master's
    /// workers, old and new.
    pub(super) fn haproxy_tree(&self, h: usize) -> Vec<i32> {
        match &self.haproxy[h] {
            Some(d) => std::iter::once(d.pid).chain(children(d.pid)).collect(),
            None => Vec::new(),
        }
    }

    /// `signal` to every haproxy process of holder `h` at once, as `systemctl kill --signal`
    /// sends it to the unit's whole control group. Workers first: a master that loses its
    /// worker ends the others itself (`exit-on-failure`).
    pub(super) fn signal_haproxy(&self, h: usize, signal: i32) {
        for pid in self.haproxy_tree(h).into_iter().rev() {
            // SAFETY: kill(2) on haproxy processes this lab started (its child and the
            // workers that child forked).
            unsafe { libc::kill(pid, signal) };
        }
    }

    /// Stops haproxy on holder `h` as `systemctl stop` does (SIGTERM to the master, which
    /// stops its workers) and waits for its `ExecStopPost=` hooks.
    pub(super) fn stop_haproxy(&mut self, h: usize) {
        if let Some(mut d) = self.haproxy[h].take() {
            // SAFETY: kill(2) on a pid this lab spawned and still watches.
            unsafe { libc::kill(d.pid, libc::SIGTERM) };
            if let Some(w) = d.watcher.take() {
                let _ = w.join();
            }
        }
    }

    /// `systemctl reload haproxy` as Debian's unit does it: the file checked (`ExecReload=
    /// /usr/sbin/haproxy -Ws -f $CONFIG -c -q $EXTRAOPTS`), then SIGUSR2 to the master. Done
    /// when the master has a worker it did not have before: a master whose new worker cannot
    /// start (a port it cannot bind) keeps the old one serving the old file while the reload
    /// reports success (found under real systemd: tests/firstboot.rs), which is what apply's
    /// node side waits for too (`reload_haproxy` in apply/node.sh).
    pub(super) fn reload_haproxy(&mut self, topo: &Topology, h: usize) -> anyhow::Result<()> {
        let m = &topo.holders[h];
        let home = self.dir.path().join(&m.name);
        let cfg = home.join("haproxy.cfg");
        self.check_file(
            &m.ns,
            &["haproxy", "-Ws", "-f", path_str(&cfg)?, "-c", "-q"],
            "haproxy ExecReload",
        )?;
        let pid = self.haproxy[h]
            .as_ref()
            .map(|d| d.pid)
            .ok_or_else(|| anyhow!("{}: haproxy is not running: nothing to reload", m.name))?;
        let before = children(pid);
        // SAFETY: kill(2) on a pid this lab spawned and still watches.
        unsafe { libc::kill(pid, libc::SIGUSR2) };
        for _ in 0..500 {
            interrupted()?;
            if children(pid).iter().any(|c| !before.contains(c)) {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "{}: haproxy's master started no new worker within 10 s of its reload: {}",
            m.name,
            crate::apply::remote::last_lines(
                &fs::read_to_string(home.join("haproxy.log")).unwrap_or_default(),
                5
            )
        )
    }

    /// Runs a checking tool (`haproxy -c`, `keepalived --config-test`) in the sandbox and
    /// `ns`, bounded to 10 s; its output in the error when it refuses.
    pub(super) fn check_file(&self, ns: &str, argv: &[&str], what: &str) -> anyhow::Result<()> {
        let mut child = self
            .command(ns, argv)?
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("{what}: running {argv:?}"))?;
        let status = wait_bounded(&mut child, what, argv)?;
        if status.success() {
            return Ok(());
        }
        let mut said = String::new();
        if let Some(mut o) = child.stdout.take() {
            let _ = o.read_to_string(&mut said);
        }
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut said);
        }
        bail!("{what}: {argv:?} refused it ({status}): {}", said.trim())
    }

    /// `systemctl reload keepalived` (Debian's unit: `ExecReload=/bin/kill -HUP $MAINPID`).
    pub(super) fn reload_keepalived(&self, topo: &Topology, h: usize) -> anyhow::Result<()> {
        let pid = self.keepalived[h].as_ref().map(|d| d.pid).ok_or_else(|| {
            anyhow!(
                "{}: keepalived is not running: nothing to reload",
                topo.holders[h].name
            )
        })?;
        // SAFETY: kill(2) on a pid this lab spawned and still watches.
        unsafe { libc::kill(pid, libc::SIGHUP) };
        Ok(())
    }

    /// Stops keepalived on holder `h` (SIGTERM: it sends a priority-0 advert and removes its
    /// VIPs) and waits for its `ExecStopPost=` hooks.
    pub(super) fn stop_keepalived(&mut self, h: usize) {
        if let Some(mut d) = self.keepalived[h].take() {
            // SAFETY: kill(2) on a pid this lab spawned and still watches.
            unsafe { libc::kill(d.pid, libc::SIGTERM) };
            if let Some(w) = d.watcher.take() {
                let _ = w.join();
            }
        }
    }

    pub(super) fn start_keepalived(&mut self, topo: &Topology, h: usize) -> anyhow::Result<()> {
        let m = &topo.holders[h];
        let home = self.dir.path().join(&m.name);
        let hooks = self.setups[h].keepalived.clone();
        self.run_hooks(topo, h, &hooks.start_pre, "keepalived ExecStartPre")?;
        let p = |n: &str| home.join(n).to_string_lossy().into_owned();
        // A crashed keepalived's VRRP child is reparented; where nothing reaps
        // it (a container's init) it stays a zombie, and keepalived takes the
        // stale pid file for a running daemon. systemd reaps; the lab removes
        // the pid files.
        for f in ["keepalived.pid", "vrrp.pid", "checkers.pid"] {
            let _ = fs::remove_file(home.join(f));
        }
        let child = self
            .command(
                &m.ns,
                &[
                    "keepalived",
                    "-n",
                    "-l",
                    "-D",
                    "-P",
                    "-f",
                    &p("keepalived.conf"),
                    "-p",
                    &p("keepalived.pid"),
                    "-r",
                    &p("vrrp.pid"),
                    "-c",
                    &p("checkers.pid"),
                ],
            )?
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(home.join("keepalived.log"))?,
            ))
            .spawn()
            .with_context(|| format!("starting keepalived for {}", m.name))?;
        *self.stop_post[h][1].lock().expect("no panic holds it") = hooks.stop_post.clone();
        let d = self.watch(topo, h, child, self.stop_post[h][1].clone(), "keepalived")?;
        self.keepalived[h] = Some(d);
        self.run_hooks(topo, h, &hooks.start_post, "keepalived ExecStartPost")
    }

    /// A thread waits for the daemon to end, then runs its stop hooks.
    pub(super) fn watch(
        &self,
        topo: &Topology,
        h: usize,
        mut child: Child,
        stop_post: Arc<Mutex<Vec<LabHook>>>,
        daemon: &str,
    ) -> anyhow::Result<Daemon> {
        let m = &topo.holders[h];
        let pid = child.id() as i32;
        let closing = self.closing.clone();
        let sandbox = self.sandbox.clone();
        let net = self.net(&m.ns)?;
        let home = self.dir.path().join(&m.name);
        let what = format!("{} {daemon} ExecStopPost", m.name);
        let watcher = thread::spawn(move || {
            let _ = child.wait();
            if !closing.load(Ordering::SeqCst) {
                let hooks = stop_post.lock().map(|h| h.clone()).unwrap_or_default();
                if let Err(e) = run_hooks(&sandbox, &net, &home, &hooks, &what) {
                    eprintln!("lab: {e:#}");
                }
            }
        });
        Ok(Daemon {
            pid,
            watcher: Some(watcher),
        })
    }

    /// Which holders have the VIP now (see [`holding`]).
    pub(super) fn holding(&self, topo: &Topology) -> Vec<(bool, bool)> {
        holding(&topo.holders, self.vip)
    }

    /// Waits until exactly one holder has the VIP and a probe succeeds;
    /// between trials ([`Lab::settle_between`]) also until no holder is in
    /// FAULT.
    ///
    /// A client whose ARP entry still names a node that gave the VIP up is
    /// cut off until the entry ages out, 15-45 s later (Linux's random
    /// `reachable_time` around `base_reachable_time` 30 s, then the 5 s
    /// `delay_first_probe_time` and three unicast probes): a holder that sends
    /// no gratuitous ARP after it won back the VIP leaves it so (the
    /// reference after a healed split brain: issue 19; the default policy's
    /// `garp_master_refresh 1` re-announces every second). After
    /// [`STALE_ARP_GRACE`] of that, the lab deletes the client's entry so
    /// the next trial starts clean, and keeps the finding for this trial
    /// ([`Lab::take_settle_finding`]).
    pub(super) fn settle(&mut self, topo: &Topology) -> anyhow::Result<()> {
        let start = Instant::now();
        let mut held = Vec::new();
        // The last failed probe, for the error: which port, what it got.
        let mut failed: Option<String> = None;
        // Since when one holder has had the VIP and the probes failed.
        let mut cut_off: Option<Instant> = None;
        let mut faulted: Vec<String> = Vec::new();
        while start.elapsed() < SETTLE {
            interrupted()?;
            let holding = self.holding(topo);
            let holders: Vec<usize> = (0..holding.len())
                .filter(|&h| holding[h].0 && holding[h].1)
                .collect();
            held = holders
                .iter()
                .map(|&h| topo.holders[h].name.clone())
                .collect();
            if held.len() != 1 {
                cut_off = None;
            }
            if self.no_fault {
                faulted = self.in_fault(topo);
                if !faulted.is_empty() {
                    thread::sleep(Duration::from_millis(100));
                    continue;
                }
            }
            if let (&[holder], Some(since)) = (holders.as_slice(), cut_off) {
                if since.elapsed() >= STALE_ARP_GRACE {
                    if let Some(finding) = self.clear_stale_arp(topo, holder, since)? {
                        self.settle_findings.push(finding);
                        cut_off = None;
                    }
                }
            }
            if held.len() == 1 {
                let first_failure = in_ns(&topo.client.ns, {
                    let (vip, ports) = (topo.vip, topo.ports.clone());
                    move || {
                        ports.iter().find_map(|&p| {
                            probe(vip, p, PROBE_TIMEOUT)
                                .err()
                                .map(|e| format!("port {p}: {e}"))
                        })
                    }
                })?;
                match first_failure {
                    None => return Ok(()),
                    Some(f) => {
                        cut_off.get_or_insert_with(Instant::now);
                        failed = Some(format!(
                            "{f} ({:.1} s in, {} holding it)",
                            start.elapsed().as_secs_f64(),
                            held[0]
                        ));
                    }
                }
            }
            thread::sleep(Duration::from_millis(100));
        }
        let logs: Vec<String> = topo
            .holders
            .iter()
            .map(|m| {
                let log = fs::read_to_string(self.dir.path().join(&m.name).join("keepalived.log"))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(12).collect();
                format!(
                    "{}:\n  {}",
                    m.name,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n  ")
                )
            })
            .collect();
        let mut last_probe = failed.map_or(String::new(), |f| {
            format!("; the last failed probe through the VIP: {f}")
        });
        if !faulted.is_empty() {
            last_probe.push_str(&format!("; {} still in FAULT", faulted.join(" and ")));
        }
        bail!(
            "VIP {} did not settle on exactly one holder answering on every port, none in FAULT, within {} s (held by {}{last_probe}); keepalived said:\n{}",
            topo.vip_name,
            SETTLE.as_secs(),
            if held.is_empty() {
                "none".to_string()
            } else {
                held.join(" and ")
            },
            logs.join("\n")
        )
    }
}

impl Lab {
    /// When the client's ARP entry for the VIP names another holder than
    /// `holder` (which has held the VIP, unanswered, since `since`): deletes
    /// the entry and says what the client went through.
    fn clear_stale_arp(
        &self,
        topo: &Topology,
        holder: usize,
        since: Instant,
    ) -> anyhow::Result<Option<String>> {
        let c = &topo.client;
        let vip = topo.vip.to_string();
        let Some(mac) = client_neighbour_mac(topo)? else {
            return Ok(None);
        };
        let named = |h: usize| self.macs.get(h).and_then(Option::as_deref) == Some(mac.as_str());
        if named(holder) {
            return Ok(None);
        }
        let whose = (0..topo.holders.len()).find(|&h| named(h)).map_or_else(
            || format!("an unknown node ({mac})"),
            |h| topo.holders[h].name.clone(),
        );
        ip(&["-n", &c.ns, "neigh", "del", &vip, "dev", &c.interface])?;
        Ok(Some(format!(
            "after the trial the client still sent to {whose}'s MAC while {} held the VIP: no gratuitous ARP had corrected its ARP entry {:.1} s later (the lab deleted the entry before the next trial; left alone it ages out in 15-45 s)",
            topo.holders[holder].name,
            since.elapsed().as_secs_f64(),
        )))
    }

    /// `settle`, and no holder left in FAULT: a trial that starts while the
    /// peer is still in FAULT, after the one before restored what it broke,
    /// measures the recovery of that trial, not its own (a FAULT node ignores
    /// the holder's priority-0 advert and waits a whole master-down
    /// interval). Inside a scenario a FAULT may be the point (the old master
    /// before it is restored), so only the run loop asks for this.
    pub(super) fn settle_between(&mut self, topo: &Topology) -> anyhow::Result<()> {
        self.no_fault = true;
        let settled = self.settle(topo);
        self.no_fault = false;
        settled
    }

    /// The holders whose keepalived last said it entered FAULT for the
    /// VIP's instance (its log, appended across restarts).
    pub(super) fn in_fault(&self, topo: &Topology) -> Vec<String> {
        topo.holders
            .iter()
            .zip(&self.instances)
            .filter(|(m, instance)| {
                let log = fs::read_to_string(self.dir.path().join(&m.name).join("keepalived.log"))
                    .unwrap_or_default();
                let tag = format!("({instance}) Entering ");
                log.lines()
                    .rev()
                    .find_map(|l| {
                        l.split_once(&tag)
                            .map(|(_, rest)| rest.starts_with("FAULT"))
                    })
                    .unwrap_or(false)
            })
            .map(|(m, _)| m.name.clone())
            .collect()
    }

    /// What `settle` found since the last call (a client cut off by a stale
    /// ARP entry), for the trial that left it so.
    pub(super) fn take_settle_finding(&mut self) -> Option<String> {
        let found = std::mem::take(&mut self.settle_findings);
        (!found.is_empty()).then(|| found.join("; "))
    }
}

/// The hardware address the client's ARP entry for the VIP names, if any.
pub(super) fn client_neighbour_mac(topo: &Topology) -> anyhow::Result<Option<String>> {
    let c = &topo.client;
    let vip = topo.vip.to_string();
    let o = Command::new("ip")
        .args([
            "-n",
            &c.ns,
            "neigh",
            "show",
            "to",
            &vip,
            "dev",
            &c.interface,
        ])
        .output()
        .context("running ip neigh")?;
    Ok(neighbour_mac(&String::from_utf8_lossy(&o.stdout)))
}

/// The hardware address in one line of `ip neigh show` (`ADDR dev IF lladdr
/// MAC STATE`), none for an entry without one (INCOMPLETE, FAILED).
pub(super) fn neighbour_mac(line: &str) -> Option<String> {
    let mut words = line.split_whitespace();
    words.find(|w| *w == "lladdr")?;
    words.next().map(str::to_ascii_lowercase)
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.closing.store(true, Ordering::SeqCst);
        // A hung (stopped) haproxy worker continues, to see its SIGTERM.
        for h in 0..self.haproxy.len() {
            self.signal_haproxy(h, libc::SIGCONT);
        }
        for d in self
            .keepalived
            .iter_mut()
            .chain(self.haproxy.iter_mut())
            .flatten()
        {
            // SAFETY: signals to processes this lab spawned. A stopped
            // (hung) haproxy only sees SIGTERM once it continues.
            unsafe {
                libc::kill(d.pid, libc::SIGTERM);
                libc::kill(d.pid, libc::SIGCONT);
            }
        }
        for d in self
            .keepalived
            .iter_mut()
            .chain(self.haproxy.iter_mut())
            .flatten()
        {
            let deadline = Instant::now() + Duration::from_secs(3);
            while pid_alive(d.pid) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
            if pid_alive(d.pid) {
                // SAFETY: as above.
                unsafe { libc::kill(d.pid, libc::SIGKILL) };
            }
            if let Some(w) = d.watcher.take() {
                let _ = w.join();
            }
        }
        // Anything else left in our namespaces (keepalived's VRRP child, a
        // hook) was started by the lab too.
        for ns in &self.namespaces {
            if let Ok(o) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        // SAFETY: a process inside a namespace this lab made.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            }
        }
        for w in self.watchers.iter_mut().flatten() {
            let _ = w.kill();
            let _ = w.wait();
        }
        for a in &mut self.anchors {
            let _ = a.kill();
            let _ = a.wait();
        }
        for i in 0..self.backends.len() {
            self.stop_backend(i);
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "delete", ns]).status();
        }
        // Debugging the lab itself: keep its files (configs, daemon logs).
        if std::env::var_os("HASEED_LAB_KEEP").is_some() {
            let dir = std::mem::replace(
                &mut self.dir,
                tempfile::Builder::new()
                    .prefix("haseed-lab-")
                    .tempdir()
                    .expect("tempdir"),
            );
            eprintln!("lab: kept {}", dir.keep().display());
        }
    }
}

/// Which `holders` have `vip` now, read in the order 0..n then n..0 (see `figures`): a
/// holder's two readings enclose those of the later ones. A free function: a sampler thread
/// reads it while the lab acts (`measure_during`).
pub(super) fn holding(holders: &[Member], vip: Ipv4Addr) -> Vec<(bool, bool)> {
    let first = read_holders(holders.iter(), vip);
    let mut second = read_holders(holders.iter().rev(), vip);
    second.reverse();
    first.into_iter().zip(second).collect()
}

fn read_holders<'m>(holders: impl Iterator<Item = &'m Member>, vip: Ipv4Addr) -> Vec<bool> {
    let vip = vip.to_string();
    holders
        .map(|m| {
            Command::new("ip")
                .args(["-n", &m.ns, "-o", "-4", "addr", "show", "dev", &m.interface])
                .stderr(Stdio::null())
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .any(|w| w.split('/').next() == Some(vip.as_str()))
                })
                .unwrap_or(false)
        })
        .collect()
}

/// The processes whose parent is `pid` (from `/proc`: the lab's processes share the host's
/// process table).
pub(super) fn children(pid: i32) -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| {
            // The fields after the command's closing parenthesis: state, then ppid.
            fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok())
                    == Some(pid)
            })
        })
        .collect()
}

/// A backend server the lab runs for a backend node.
pub(super) struct BackendServer {
    pub(super) member: Member,
    pub(super) port: u16,
    pub(super) running: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
    /// Set: its `/readyz` answers 500 while it still serves (an API server
    /// in its `--shutdown-delay-duration`, `backend-draining`).
    pub(super) draining: Arc<AtomicBool>,
}

#[cfg(test)]
mod tests {
    use super::neighbour_mac;

    #[test]
    fn the_neighbour_mac_is_read_from_ip_neigh_lines() {
        assert_eq!(
            neighbour_mac("192.168.3.240 dev eth0 lladdr 0A:58:c0:a8:03:f1 REACHABLE\n").as_deref(),
            Some("0a:58:c0:a8:03:f1")
        );
        // Entries being resolved or given up have no address.
        assert_eq!(neighbour_mac("192.168.3.240 dev eth0 INCOMPLETE"), None);
        assert_eq!(neighbour_mac("192.168.3.240 dev eth0 FAILED"), None);
        assert_eq!(neighbour_mac(""), None);
    }
}
