//! The client's probes, the backends' tiny servers, the figures of a trial
//! from its probes and VIP samples, and the namespace plumbing they share.

use super::*;

/// One client probe.
#[derive(Clone, Debug)]
pub struct Probe {
    pub t_ms: f64,
    pub ok: bool,
    pub latency_ms: f64,
}

/// A VIP sample: time, and per holder its two readings (see `holding`).
pub type Sample = (f64, Vec<(bool, bool)>);

/// One measurement window: probes, VIP samples, when the action ran.
pub(super) struct Measured {
    pub(super) probes: Vec<Probe>,
    pub(super) samples: Vec<Sample>,
    pub(super) action_ms: f64,
}

/// The figures of one trial from its probes and VIP samples. Reading the
/// holders one after another, a fast move would look like a duplicate; so a
/// sample counts as a duplicate only when a holder had the VIP in both of its
/// readings while a later holder (read in between) had it too.
pub(super) fn figures(
    scenario: &'static str,
    trial: u32,
    probes: &[Probe],
    samples: &[Sample],
) -> TrialResult {
    let mut outage: f64 = 0.0;
    let mut since: Option<f64> = None;
    for p in probes {
        match (p.ok, since) {
            (false, None) => since = Some(p.t_ms),
            (true, Some(s)) => {
                outage = outage.max(p.t_ms - s);
                since = None;
            }
            _ => {}
        }
    }
    if let (Some(s), Some(last)) = (since, probes.last()) {
        outage = outage.max(last.t_ms + last.latency_ms - s);
    }
    let mut moves = 0;
    let mut owner: Option<usize> = None;
    let mut duplicate = 0.0;
    for (k, (t, held)) in samples.iter().enumerate() {
        let twice = held_twice(held);
        let holders: Vec<usize> = held
            .iter()
            .enumerate()
            .filter(|(_, (a, b))| *a && *b)
            .map(|(i, _)| i)
            .collect();
        if twice {
            let next = samples.get(k + 1).map_or(*t, |(n, _)| *n);
            duplicate += next - t;
        }
        if let [one] = holders[..] {
            if owner.is_some_and(|o| o != one) {
                moves += 1;
            }
            owner = Some(one);
        }
    }
    TrialResult {
        scenario,
        trial,
        outage_ms: outage,
        probes: probes.len(),
        failed_probes: probes.iter().filter(|p| !p.ok).count(),
        max_latency_ms: probes
            .iter()
            .filter(|p| p.ok)
            .map(|p| p.latency_ms)
            .fold(0.0, f64::max),
        vip_moves: moves,
        duplicate_vip_ms: duplicate,
        arp_answered_by: Vec::new(),
        passed: false,
        reference: false,
        why: None,
        note: None,
        timeline: None,
    }
}

/// Whether one sample shows the VIP on two holders at once: a holder had it
/// in both of its readings while a later holder, read in between, had it in
/// either (`Daemons::holding` reads 0..n then n..0). A move during the
/// sample shows the leaver in one reading and the taker in the other, which
/// is not a duplicate.
pub(super) fn held_twice(held: &[(bool, bool)]) -> bool {
    held.iter()
        .enumerate()
        .any(|(i, (a, b))| *a && *b && held[i + 1..].iter().any(|(c, d)| *c || *d))
}

/// A TCP connect and one request; success is an answer within the timeout.
pub(super) fn probe(vip: Ipv4Addr, port: u16, timeout: Duration) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(&SocketAddr::from((vip, port)), timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf)?;
    if n == 0 {
        return Err(std::io::Error::other("closed without an answer"));
    }
    Ok(())
}

/// Most connections one backend serves at once, each on its own thread.
const BACKEND_CONNECTIONS: usize = 64;
/// How long a backend connection waits for its request: longer than
/// `long-lived`'s idle connection (a watch that hears nothing for a while).
const BACKEND_WAIT: Duration = Duration::from_secs(90);
/// `GET /slow` is answered after this long (`long-lived`: an API call the
/// server answers late).
pub(super) const SLOW_ANSWER: Duration = Duration::from_secs(10);

/// The stand-in backends' TLS, for haproxy's HTTPS check of the API
/// servers (`apiserver_check = "readyz"` or `"healthz"`, `check-ssl verify
/// none`): a self-signed certificate made when the lab starts, served with
/// rustls (ring provider).
pub(super) fn tls_config() -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let key = rcgen::KeyPair::generate().context("a key for the backends' TLS")?;
    let cert = rcgen::CertificateParams::new(vec!["haseed-lab".to_string()])?
        .self_signed(&key)
        .context("the backends' self-signed certificate")?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    // ring (no cmake or Go toolchain to build, unlike aws-lc-rs); rustls
    // 0.23.48 deprecated its provider for lacking post-quantum key exchange,
    // which a lab server answering health checks inside its own namespaces
    // does not need.
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .context("the backends' TLS configuration")?;
    Ok(Arc::new(config))
}

/// What a backend server's connections share.
pub(super) struct Flags {
    /// Set: the server stops.
    pub(super) stop: Arc<AtomicBool>,
    /// Set: `GET /readyz` over TLS answers 500 (the server still serves).
    pub(super) draining: Arc<AtomicBool>,
    pub(super) tls: Arc<rustls::ServerConfig>,
}

/// A tiny backend server in its node's namespace, until `stop`: each
/// connection gets `ok` once its request arrives (after [`SLOW_ANSWER`] for
/// `GET /slow`), and is closed when the server stops. A connection that
/// starts with a TLS handshake is haproxy's HTTPS check (`serve_tls`).
pub(super) fn backend(
    ns: &str,
    addr: Ipv4Addr,
    port: u16,
    flags: Flags,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let stop = flags.stop.clone();
    let flags = Arc::new(flags);
    let listener = enter_netns(ns)
        .map_err(|e| e.to_string())
        .and_then(|()| TcpListener::bind((addr, port)).map_err(|e| e.to_string()))
        .and_then(|l| {
            l.set_nonblocking(true)
                .map(|()| l)
                .map_err(|e| e.to_string())
        });
    let listener = match listener {
        Ok(l) => {
            let _ = ready.send(Ok(()));
            l
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let live = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((s, _)) => {
                threads.retain(|t| !t.is_finished());
                if live.load(Ordering::SeqCst) >= BACKEND_CONNECTIONS {
                    continue; // dropped: closed at once
                }
                live.fetch_add(1, Ordering::SeqCst);
                let (flags, live) = (flags.clone(), live.clone());
                threads.push(thread::spawn(move || {
                    serve(s, &flags);
                    live.fetch_sub(1, Ordering::SeqCst);
                }));
            }
            Err(_) => thread::sleep(Duration::from_millis(2)),
        }
    }
    // Stopped: the port refuses, and every open connection closes with it.
    drop(listener);
    for t in threads {
        let _ = t.join();
    }
}

/// A read or write that ran out its timeout (Linux reports `WouldBlock`
/// for `SO_RCVTIMEO`), not a failed connection.
pub(super) fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// The first byte of a TLS connection: a handshake record (RFC 8446
/// section 5.1, `ContentType handshake(22)`), which no plain request starts
/// with.
const TLS_HANDSHAKE: u8 = 0x16;
/// How long a TLS check's handshake and request may take.
const TLS_WAIT: Duration = Duration::from_secs(2);

/// One backend connection: waits for the request (up to [`BACKEND_WAIT`],
/// checking `stop` every 100 ms) and answers it; a peer that closes first
/// (a TCP health check) gets nothing; one that opens with a TLS handshake
/// is served by [`serve_tls`].
fn serve(mut s: TcpStream, flags: &Flags) {
    let stop = &*flags.stop;
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 512];
    let start = Instant::now();
    let n = loop {
        if stop.load(Ordering::SeqCst) || start.elapsed() > BACKEND_WAIT {
            return;
        }
        match s.peek(&mut buf[..1]) {
            Ok(0) => return,
            Ok(_) if buf[0] == TLS_HANDSHAKE => return serve_tls(s, flags),
            Ok(_) => {}
            Err(e) if is_timeout(&e) => continue,
            Err(_) => return,
        }
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => break n,
            Err(e) if is_timeout(&e) => {}
            Err(_) => return,
        }
    };
    if buf[..n].starts_with(b"GET /slow ") {
        // While it works on the answer the server watches the connection,
        // as Go's net/http does (the kube-apiserver): a read of end-of-file
        // (the load balancer half-closed it after the client's timeout)
        // cancels the request and the connection closes unanswered
        // (net/http server.go, `connReader.backgroundRead` and
        // `handleReadError` cancel the request's context).
        let end = Instant::now() + SLOW_ANSWER;
        while Instant::now() < end {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            match s.read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {}
                Err(_) => return,
            }
        }
    }
    let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n");
}

/// An HTTPS request on a backend, as haproxy's `option httpchk` with
/// `check-ssl` sends it: `GET /readyz` gets 200, or 500 while the backend is
/// draining (kube-apiserver during `--shutdown-delay-duration`); any other
/// request gets 200. One request, then close_notify.
fn serve_tls(mut s: TcpStream, flags: &Flags) {
    let _ = s.set_read_timeout(Some(TLS_WAIT));
    let _ = s.set_write_timeout(Some(TLS_WAIT));
    let Ok(mut conn) = rustls::ServerConnection::new(flags.tls.clone()) else {
        return;
    };
    let mut tls = rustls::Stream::new(&mut conn, &mut s);
    let mut request = Vec::new();
    let mut buf = [0u8; 512];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 4096 {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let readyz = request.starts_with(b"GET /readyz ") || request.starts_with(b"GET /readyz?");
    // kube-apiserver's words in its shutdown delay.
    let (status, body) = if readyz && flags.draining.load(Ordering::SeqCst) {
        (
            "500 Internal Server Error",
            "[-]shutdown failed: reason withheld\nreadyz check failed\n",
        )
    } else {
        ("200 OK", "ok\n")
    };
    let answer = format!(
        "HTTP/1.0 {status}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if tls.write_all(answer.as_bytes()).is_ok() {
        tls.conn.send_close_notify();
        let _ = tls.flush();
    }
}

/// Runs `f` on a thread inside network namespace `ns` (a name under
/// /run/netns).
pub fn in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let ns = ns.to_string();
    thread::spawn(move || enter_netns(&ns).map(|()| f()))
        .join()
        .map_err(|_| anyhow!("lab thread panicked"))?
        .map_err(Into::into)
}

/// Moves the calling thread (only it) into network namespace `ns`.
pub(super) fn enter_netns(ns: &str) -> std::io::Result<()> {
    let f = fs::File::open(Path::new("/run/netns").join(ns))?;
    // SAFETY: setns on a namespace file we opened; affects this thread only.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The hardware address of `interface` in namespace `ns` (`aa:bb:..`).
pub fn mac_of(ns: &str, interface: &str) -> Option<String> {
    let o = Command::new("ip")
        .args(["-n", ns, "-o", "link", "show", "dev", interface])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&o.stdout);
    let mut words = text.split_whitespace();
    words.find(|w| *w == "link/ether")?;
    words.next().map(str::to_string)
}

pub(super) fn ip(args: &[&str]) -> anyhow::Result<()> {
    let o = Command::new("ip")
        .args(args)
        .output()
        .context("running ip")?;
    if !o.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(())
}

pub(super) fn pid_alive(pid: i32) -> bool {
    // Zombies count as gone: the watcher reaps them.
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection to a backend on loopback, served as the lab serves it.
    fn ask(flags: &Arc<Flags>, client: impl FnOnce(u16) -> String + Send + 'static) -> String {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let port = l.local_addr().expect("addr").port();
        let asker = thread::spawn(move || client(port));
        let (s, _) = l.accept().expect("accept");
        serve(s, flags);
        asker.join().expect("client")
    }

    fn curl(port: u16, path: &str) -> String {
        let o = Command::new("curl")
            .args(["-sk", "--max-time", "5", "-w", " %{http_code}"])
            .arg(format!("https://127.0.0.1:{port}{path}"))
            .output()
            .expect("curl runs");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The stand-in API server answers an HTTPS /readyz (200, or 500 while
    /// it drains) and still answers plain requests (the probes).
    #[test]
    fn backends_answer_the_https_readyz_check_and_plain_probes() {
        let flags = Arc::new(Flags {
            stop: Arc::new(AtomicBool::new(false)),
            draining: Arc::new(AtomicBool::new(false)),
            tls: tls_config().expect("tls"),
        });
        assert_eq!(ask(&flags, |p| curl(p, "/readyz")), "ok\n 200");
        let plain = ask(&flags, |p| {
            let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, p)).expect("connect");
            s.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("write");
            let mut answer = String::new();
            s.read_to_string(&mut answer).expect("read");
            answer
        });
        assert!(plain.starts_with("HTTP/1.0 200 OK\r\n"), "{plain}");
        flags.draining.store(true, Ordering::SeqCst);
        let drained = ask(&flags, |p| curl(p, "/readyz"));
        assert!(drained.ends_with("readyz check failed\n 500"), "{drained}");
        // Draining, it still serves everything else.
        assert_eq!(ask(&flags, |p| curl(p, "/version")), "ok\n 200");
    }
}
