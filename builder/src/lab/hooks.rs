//! What the lab agrees to run for a node: a closed, typed set of hooks and
//! keepalived checks, recognised in the plan and rendered again by the host.
//!
//! A plan's systemd drop-ins and keepalived scripts are plugin output: text
//! any plugin in the chain may have written. On the node that is the plan's
//! business; on the build host, where `haseed lab` runs as root, it is not.
//! So the lab never executes a command it read from a plan. Each command is
//! parsed into one of the actions below (the default policy's own hooks and
//! checks, `plugins/default-policy/src/failover.rs` and `settings.rs`), its
//! fields validated (interface names, addresses, state paths, numbers), and
//! accepted only when rendering the action again gives the very argv the
//! plan holds. The lab then runs the argv it renders itself, with the node's
//! state paths moved into the lab. Anything else is refused before the lab
//! creates a namespace or starts a process, and the refusal names the node,
//! the file and the line. (What does run also runs inside the lab's sandbox,
//! `sandbox.rs`: the two are independent walls.)
//!
//! Pure: text and plans in, typed actions and argv out.

use std::net::Ipv4Addr;
use std::path::Path;

use super::unit::{ExecCommand, Hooks};

/// Directories the node keeps haseed's state in; the lab gives each node its
/// own copy under its lab directory.
pub const STATE_DIRS: &[&str] = &["/var/lib/haseed", "/run/haseed", "/var/run/haseed"];

/// Where a node's state directory lives in the lab.
/// `/var/run` is `/run` on every distribution haseed targets: one directory.
pub fn lab_state_dir(home: &Path, dir: &str) -> String {
    let dir = if dir.starts_with("/var/run/") {
        &dir[4..]
    } else {
        dir
    };
    let leaf = dir.trim_start_matches('/').replace('/', "-");
    format!("{}/{leaf}", home.display())
}

/// A state path of the node (a file or directory under a [`STATE_DIRS`]
/// entry), moved into the lab.
pub fn lab_state_path(home: &Path, path: &str) -> Option<String> {
    STATE_DIRS.iter().find_map(|d| {
        if path == *d {
            Some(lab_state_dir(home, d))
        } else {
            path.strip_prefix(d)
                .and_then(|rest| rest.strip_prefix('/'))
                .filter(|rest| rest.split('/').all(is_name))
                .map(|rest| format!("{}/{rest}", lab_state_dir(home, d)))
        }
    })
}

/// One hook of a `haproxy.service` or `keepalived.service` drop-in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hook {
    /// `/bin/mkdir -p DIR`: the state directory exists.
    MakeStateDir { dir: &'static str },
    /// `/bin/sh -c 'mkdir -p DIR && echo N > DIR/NAME'`: a track file's value.
    WriteTrack {
        dir: &'static str,
        name: String,
        value: i32,
    },
    /// `/bin/sh -c 'sysctl -q -w net/ipv4/conf/IF/arp_ignore=1
    /// net/ipv4/conf/IF/arp_announce=2 && ip addr replace A/32 dev lo && ...'`:
    /// the VIPs kept on `lo`, never answered in ARP on IF.
    LocalVip {
        interface: String,
        addresses: Vec<Ipv4Addr>,
    },
    /// `/bin/sh -c '[sleep S; ]ip addr del CIDR dev IF 2>/dev/null; ...; true'`:
    /// the node's VIPs removed, after `delay` when there is one.
    RemoveVips {
        delay: Option<String>,
        interface: String,
        addresses: Vec<String>,
    },
}

impl Hook {
    /// The argv the node runs, with the node's paths.
    pub fn node_argv(&self) -> Vec<String> {
        self.argv(&|dir| dir.to_string())
    }

    /// The argv the lab runs: state paths under `home`.
    pub fn lab_argv(&self, home: &Path) -> Vec<String> {
        self.argv(&|dir| lab_state_dir(home, dir))
    }

    fn argv(&self, state: &dyn Fn(&str) -> String) -> Vec<String> {
        let sh = |script: String| vec!["/bin/sh".to_string(), "-c".to_string(), script];
        match self {
            Hook::MakeStateDir { dir } => {
                vec!["/bin/mkdir".into(), "-p".into(), state(dir)]
            }
            Hook::WriteTrack { dir, name, value } => {
                let d = state(dir);
                sh(format!("mkdir -p {d} && echo {value} > {d}/{name}"))
            }
            Hook::LocalVip {
                interface,
                addresses,
            } => {
                let mut s = format!(
                    "sysctl -q -w net/ipv4/conf/{interface}/arp_ignore=1 \
                     net/ipv4/conf/{interface}/arp_announce=2"
                );
                for a in addresses {
                    s.push_str(&format!(" && ip addr replace {a}/32 dev lo"));
                }
                sh(s)
            }
            Hook::RemoveVips {
                delay,
                interface,
                addresses,
            } => {
                let mut s = String::new();
                if let Some(d) = delay {
                    s.push_str(&format!("sleep {d}; "));
                }
                for a in addresses {
                    s.push_str(&format!("ip addr del {a} dev {interface} 2>/dev/null; "));
                }
                s.push_str("true");
                sh(s)
            }
        }
    }

    /// Recognises `argv` as one of the hooks, or says why it is none.
    pub fn recognise(argv: &[String]) -> Result<Hook, String> {
        let hook = match argv {
            [mkdir, p, dir] if mkdir == "/bin/mkdir" && p == "-p" => Hook::MakeStateDir {
                dir: state_dir(dir)?,
            },
            [sh, c, script] if sh == "/bin/sh" && c == "-c" => recognise_script(script)?,
            _ => {
                return Err("not one of the hooks haseed's default policy writes".into());
            }
        };
        // Only the canonical text: rendering the parsed action again must
        // give back exactly what the plan holds.
        if hook.node_argv() != argv {
            return Err("not in the exact form haseed's default policy writes".into());
        }
        Ok(hook)
    }
}

fn recognise_script(script: &str) -> Result<Hook, String> {
    if let Some(rest) = script.strip_prefix("mkdir -p ") {
        let (dir, rest) = rest.split_once(" && echo ").ok_or("unknown shell script")?;
        let (value, path) = rest.split_once(" > ").ok_or("unknown shell script")?;
        let dir = state_dir(dir)?;
        let name = path
            .strip_prefix(dir)
            .and_then(|p| p.strip_prefix('/'))
            .filter(|n| is_name(n))
            .ok_or("the track file is not a plain file of the state directory")?;
        let value: i32 = value
            .parse()
            .map_err(|_| "the track value is not a number")?;
        return Ok(Hook::WriteTrack {
            dir,
            name: name.to_string(),
            value,
        });
    }
    if let Some(rest) = script.strip_prefix("sysctl -q -w net/ipv4/conf/") {
        let mut parts = rest.split(" && ");
        let sysctls = parts.next().ok_or("unknown shell script")?;
        let interface = sysctls
            .split_once('/')
            .map(|(i, _)| i)
            .ok_or("unknown shell script")?;
        interface_name(interface)?;
        let addresses = parts
            .map(|p| {
                p.strip_prefix("ip addr replace ")
                    .and_then(|p| p.strip_suffix("/32 dev lo"))
                    .ok_or_else(|| "unknown command after the sysctls".to_string())
                    .and_then(ipv4)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if addresses.is_empty() {
            return Err("no address to keep on lo".into());
        }
        return Ok(Hook::LocalVip {
            interface: interface.to_string(),
            addresses,
        });
    }
    let body = script
        .strip_suffix("; true")
        .ok_or("unknown shell script")?;
    let mut commands: Vec<&str> = body.split("; ").collect();
    let delay = match commands.first().and_then(|c| c.strip_prefix("sleep ")) {
        Some(d) => {
            seconds(d)?;
            commands.remove(0);
            Some(d.to_string())
        }
        None => None,
    };
    let mut interface: Option<&str> = None;
    let mut addresses = Vec::new();
    for c in commands {
        let (cidr, rest) = c
            .strip_prefix("ip addr del ")
            .and_then(|c| c.split_once(" dev "))
            .ok_or("unknown shell script")?;
        let ifname = rest
            .strip_suffix(" 2>/dev/null")
            .ok_or("unknown shell script")?;
        interface_name(ifname)?;
        if interface.is_some_and(|i| i != ifname) {
            return Err("VIPs removed from more than one interface".into());
        }
        interface = Some(ifname);
        ipv4_cidr(cidr)?;
        addresses.push(cidr.to_string());
    }
    let interface = interface.ok_or("no address to remove")?;
    Ok(Hook::RemoveVips {
        delay,
        interface: interface.to_string(),
        addresses,
    })
}

fn state_dir(dir: &str) -> Result<&'static str, String> {
    STATE_DIRS
        .iter()
        .copied()
        .find(|d| *d == dir)
        .ok_or_else(|| format!("{dir} is not haseed's state directory"))
}

/// A file or directory name: letters, digits, '.', '_', '-'; not `.`/`..`.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A Linux interface name (at most 15 bytes, no '/', no whitespace).
fn interface_name(s: &str) -> Result<(), String> {
    if is_name(s) && s.len() <= 15 && !s.starts_with('-') {
        Ok(())
    } else {
        Err(format!("{s:?} is not an interface name"))
    }
}

fn ipv4(s: &str) -> Result<Ipv4Addr, String> {
    s.parse::<Ipv4Addr>()
        .ok()
        .filter(|a| a.to_string() == s)
        .ok_or_else(|| format!("{s:?} is not an IPv4 address"))
}

fn ipv4_cidr(s: &str) -> Result<(), String> {
    let (a, p) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not ADDRESS/PREFIX"))?;
    ipv4(a)?;
    match p.parse::<u8>() {
        Ok(n) if n <= 32 && n.to_string() == p => Ok(()),
        _ => Err(format!("{s:?} is not ADDRESS/PREFIX")),
    }
}

/// `sleep`'s argument as the default policy writes it: `S` or `S.mmm`, at
/// most 60 s.
fn seconds(s: &str) -> Result<(), String> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, "0"));
    let ok = !whole.is_empty()
        && whole.len() <= 2
        && whole.bytes().all(|b| b.is_ascii_digit())
        && !frac.is_empty()
        && frac.len() <= 3
        && frac.bytes().all(|b| b.is_ascii_digit())
        && whole.parse::<u32>().is_ok_and(|w| w <= 60);
    if ok {
        Ok(())
    } else {
        Err(format!("{s:?} is not a delay in seconds"))
    }
}

/// A recognised hook and whether it carries systemd's `-` (failure ignored).
pub type LabHook = (Hook, bool);

/// The hooks of one service, recognised: what the lab runs at each point.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceHooks {
    pub start_pre: Vec<LabHook>,
    pub start_post: Vec<LabHook>,
    pub stop_post: Vec<LabHook>,
}

/// One command the lab refused to run, for the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub node: String,
    /// The plan file or field it came from.
    pub place: String,
    /// The command as the plan holds it.
    pub command: String,
    pub why: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "node {}: {}: {} ({})",
            self.node,
            self.place,
            crate::policy::one_line(&self.command),
            self.why
        )
    }
}

/// Recognises every hook of a service's parsed drop-ins.
pub fn recognise_hooks(node: &str, hooks: &Hooks, refusals: &mut Vec<Refusal>) -> ServiceHooks {
    let mut out = ServiceHooks::default();
    let lists: [(&str, &[ExecCommand], &mut Vec<LabHook>); 3] = [
        ("ExecStartPre", &hooks.start_pre, &mut out.start_pre),
        ("ExecStartPost", &hooks.start_post, &mut out.start_post),
        ("ExecStopPost", &hooks.stop_post, &mut out.stop_post),
    ];
    for (key, list, into) in lists {
        for c in list {
            match Hook::recognise(&c.argv) {
                Ok(h) => into.push((h, c.ignore_failure)),
                Err(why) => refusals.push(Refusal {
                    node: node.to_string(),
                    place: format!("{} {key}=", c.at),
                    command: c.argv.join(" "),
                    why,
                }),
            }
        }
    }
    for (at, key) in &hooks.other_exec {
        refusals.push(Refusal {
            node: node.to_string(),
            place: format!("{at} {key}="),
            command: String::new(),
            why: "the lab runs the distribution's own haproxy and keepalived and emulates only \
                  ExecStartPre=, ExecStartPost= and ExecStopPost="
                .into(),
        });
    }
    out
}

/// The default policy's watcher script (`haseed-haproxy-watch`), as this
/// host was built with it: the lab runs this text, never the plan's copy,
/// and only for a plan whose copy is exactly this.
pub const WATCH_SCRIPT: &str = include_str!("../../assets/default-policy/src/haproxy-watch.sh");
/// Where the default policy installs it.
pub const WATCH_SCRIPT_PATH: &str = "/usr/local/sbin/haseed-haproxy-watch";

/// The watcher's unit `ExecStart=`: `haseed-haproxy-watch PORT URI TRACK
/// EVERY TIMEOUT FALL [PEER...]` (the script's header says what each is).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watch {
    pub port: u16,
    pub path: String,
    /// The track file: a state directory and a plain name in it.
    pub dir: &'static str,
    pub name: String,
    /// Between two questions, and each question's timeout, ms.
    pub every_ms: u64,
    pub timeout_ms: u64,
    pub fall: u32,
    pub peers: Vec<Ipv4Addr>,
}

impl Watch {
    /// Recognises the watcher's argv, or says why it is not one.
    pub fn recognise(argv: &[String]) -> Result<Watch, String> {
        let [program, port, path, track, every, timeout, fall, peers @ ..] = argv else {
            return Err(
                "not haseed-haproxy-watch PORT URI TRACK EVERY TIMEOUT FALL [PEER...]".into(),
            );
        };
        if program != WATCH_SCRIPT_PATH {
            return Err(format!("the program is not {WATCH_SCRIPT_PATH}"));
        }
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or("the port is not a port")?;
        if !path.starts_with('/')
            || !path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b))
        {
            return Err("the URI has characters the default policy never writes".into());
        }
        let (dir, name) = STATE_DIRS
            .iter()
            .find_map(|d| {
                track
                    .strip_prefix(d)
                    .and_then(|r| r.strip_prefix('/'))
                    .filter(|n| is_name(n))
                    .map(|n| (*d, n.to_string()))
            })
            .ok_or("the track file is not a plain file of haseed's state directory")?;
        let ms = |s: &str, what: &str| {
            s.parse::<u64>()
                .ok()
                .filter(|m| (10..=60_000).contains(m))
                .ok_or_else(|| format!("{what} is not 10..60000 ms"))
        };
        let every_ms = ms(every, "the interval")?;
        let timeout_ms = ms(timeout, "the timeout")?;
        let fall: u32 = fall
            .parse()
            .ok()
            .filter(|f| (1..=100).contains(f))
            .ok_or("fall is not 1..100")?;
        let peers = peers
            .iter()
            .map(|p| ipv4(p))
            .collect::<Result<Vec<_>, _>>()?;
        let w = Watch {
            port,
            path: path.clone(),
            dir,
            name,
            every_ms,
            timeout_ms,
            fall,
            peers,
        };
        if w.args(&|d| d.to_string()) != argv[1..] {
            return Err("not in the exact form haseed's default policy writes".into());
        }
        Ok(w)
    }

    fn args(&self, state: &dyn Fn(&str) -> String) -> Vec<String> {
        [
            self.port.to_string(),
            self.path.clone(),
            format!("{}/{}", state(self.dir), self.name),
            self.every_ms.to_string(),
            self.timeout_ms.to_string(),
            self.fall.to_string(),
        ]
        .into_iter()
        .chain(self.peers.iter().map(|p| p.to_string()))
        .collect()
    }

    /// The argv the lab runs: the host's own copy of the script (`script`,
    /// written by the lab) under `/bin/sh`, the track file under `home`.
    pub fn lab_argv(&self, script: &Path, home: &Path) -> Vec<String> {
        ["/bin/sh".to_string(), script.display().to_string()]
            .into_iter()
            .chain(self.args(&|d| lab_state_dir(home, d)))
            .collect()
    }

    /// Longest time from a hang to the track file written: the last good
    /// answer just before it, the next question up to `every` later, then
    /// `fall` questions that each wait their timeout, one starting at most
    /// every `every` (curl's `--rate`) or as soon as the previous one gave up.
    pub fn detect_ms(&self) -> u64 {
        let fall = u64::from(self.fall);
        self.every_ms + (fall - 1) * self.every_ms.max(self.timeout_ms) + self.timeout_ms
    }
}

/// A keepalived `vrrp_script` the lab runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// `pgrep -x haproxy` (or the reference's `systemctl is-active --quiet
    /// haproxy`, which needs systemd: the lab asks the same question of the
    /// node's processes).
    HaproxyProcess,
    /// `curl --silent [--fail] --output /dev/null --max-time N
    /// http://127.0.0.1:PORT/PATH`: haproxy's own monitor URI (with
    /// `--fail`, an HTTP error fails too).
    LocalHttp {
        fail: bool,
        max_time_s: u32,
        port: u16,
        path: String,
    },
}

impl Check {
    /// Recognises a script's argv, or says why it is none of the checks.
    pub fn recognise(argv: &[String]) -> Result<Check, String> {
        let words: Vec<&str> = argv.iter().map(String::as_str).collect();
        let check = match words.as_slice() {
            ["/usr/bin/pgrep", "-x", "haproxy"]
            | ["/usr/bin/systemctl", "is-active", "--quiet", "haproxy"] => Check::HaproxyProcess,
            ["/usr/bin/curl", "--silent", "--fail", "--output", "/dev/null", "--max-time", t, url]
            | ["/usr/bin/curl", "--silent", "--output", "/dev/null", "--max-time", t, url] => {
                let max_time_s = t
                    .parse::<u32>()
                    .ok()
                    .filter(|t| (1..=60).contains(t))
                    .ok_or("curl's --max-time is not 1-60 s")?;
                let rest = url
                    .strip_prefix("http://127.0.0.1:")
                    .ok_or("curl asks another host than 127.0.0.1")?;
                let (port, path) = rest.split_once('/').ok_or("no path in the URL")?;
                let port: u16 = port
                    .parse()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or("the URL's port is not a port")?;
                if !path
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b))
                {
                    return Err(
                        "the URL's path has characters the default policy never writes".into(),
                    );
                }
                Check::LocalHttp {
                    fail: words.contains(&"--fail"),
                    max_time_s,
                    port,
                    path: format!("/{path}"),
                }
            }
            _ => return Err("not one of the checks haseed's default policy writes".into()),
        };
        Ok(check)
    }

    /// The argv the lab runs: `pgrep` scoped to the node's network
    /// namespace through `anchor`, a process living there (the lab's
    /// namespaces share one process table; a node's `pgrep` sees only its
    /// own processes).
    pub fn lab_argv(&self, anchor: u32) -> Vec<String> {
        match self {
            Check::HaproxyProcess => [
                "/usr/bin/pgrep",
                "--nslist",
                "net",
                "--ns",
                &anchor.to_string(),
                "-x",
                "haproxy",
            ]
            .iter()
            .map(|w| w.to_string())
            .collect(),
            Check::LocalHttp {
                fail,
                max_time_s,
                port,
                path,
            } => ["/usr/bin/curl", "--silent"]
                .into_iter()
                .chain(fail.then_some("--fail"))
                .chain(["--output", "/dev/null", "--max-time"])
                .map(String::from)
                .chain([
                    max_time_s.to_string(),
                    format!("http://127.0.0.1:{port}{path}"),
                ])
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn the_default_policys_hooks_are_recognised_and_moved_into_the_lab() {
        let cases = [
            v(&["/bin/mkdir", "-p", "/var/lib/haseed"]),
            v(&[
                "/bin/sh",
                "-c",
                "mkdir -p /var/lib/haseed && echo 0 > /var/lib/haseed/haproxy-down",
            ]),
            v(&[
                "/bin/sh",
                "-c",
                "sysctl -q -w net/ipv4/conf/eth0.10/arp_ignore=1 net/ipv4/conf/eth0.10/arp_announce=2 \
                 && ip addr replace 192.168.3.240/32 dev lo && ip addr replace 10.0.0.1/32 dev lo",
            ]),
            v(&[
                "/bin/sh",
                "-c",
                "ip addr del 192.168.3.240/24 dev eth0 2>/dev/null; true",
            ]),
            v(&[
                "/bin/sh",
                "-c",
                "sleep 0.400; ip addr del 192.168.3.240/24 dev eth0 2>/dev/null; \
                 ip addr del 192.168.3.241/24 dev eth0 2>/dev/null; true",
            ]),
        ];
        for argv in cases {
            let h = Hook::recognise(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
            assert_eq!(h.node_argv(), argv);
        }
        let home = Path::new("/tmp/lab/lb1");
        let h = Hook::recognise(&v(&[
            "/bin/sh",
            "-c",
            "mkdir -p /var/lib/haseed && echo 1 > /var/lib/haseed/haproxy-down",
        ]))
        .expect("track");
        assert_eq!(
            h.lab_argv(home)[2],
            "mkdir -p /tmp/lab/lb1/var-lib-haseed && echo 1 > /tmp/lab/lb1/var-lib-haseed/haproxy-down"
        );
        assert_eq!(
            lab_state_path(home, "/run/haseed/x").as_deref(),
            Some("/tmp/lab/lb1/run-haseed/x")
        );
        assert_eq!(lab_state_path(home, "/run/haseed/../x"), None);
        assert_eq!(lab_state_path(home, "/etc/passwd"), None);
    }

    #[test]
    fn anything_else_is_refused() {
        let refused = [
            // What the adversarial review ran.
            v(&["/bin/sh", "-c", "cat /etc/shadow > /tmp/x"]),
            v(&["/usr/bin/touch", "/tmp/x"]),
            // The right shape around a payload.
            v(&[
                "/bin/sh",
                "-c",
                "mkdir -p /var/lib/haseed && echo 0 > /var/lib/haseed/x; id > /tmp/y",
            ]),
            v(&[
                "/bin/sh",
                "-c",
                "mkdir -p /var/lib/haseed && echo 0 > /var/lib/haseed/$(id)",
            ]),
            v(&["/bin/sh", "-c", "mkdir -p /etc && echo 0 > /etc/x"]),
            v(&[
                "/bin/sh",
                "-c",
                "sysctl -q -w net/ipv4/conf/eth0/arp_ignore=1 net/ipv4/conf/eth0/arp_announce=2 \
                 && ip addr replace 10.0.0.1/32 dev lo && reboot",
            ]),
            v(&[
                "/bin/sh",
                "-c",
                "sysctl -q -w kernel/core_pattern=|/tmp/x net/ipv4/conf/eth0/arp_announce=2 \
                 && ip addr replace 10.0.0.1/32 dev lo",
            ]),
            v(&[
                "/bin/sh",
                "-c",
                "sleep 1; ip addr del 10.0.0.1/24 dev eth0 2>/dev/null; rm -rf /; true",
            ]),
            v(&[
                "/bin/sh",
                "-c",
                "ip addr del 10.0.0.1/24 dev eth0;reboot 2>/dev/null; true",
            ]),
            v(&["/bin/sh", "-c", "sleep 9999; true"]),
            v(&["/bin/mkdir", "-p", "/etc/cron.d"]),
            // Extra words, other spacing: not the canonical text.
            v(&["/bin/mkdir", "-p", "/var/lib/haseed", "/tmp/x"]),
            v(&[
                "/bin/sh",
                "-c",
                "mkdir -p /var/lib/haseed  && echo 0 > /var/lib/haseed/x",
            ]),
        ];
        for argv in refused {
            assert!(Hook::recognise(&argv).is_err(), "{argv:?} was accepted");
        }
    }

    #[test]
    fn only_the_default_policys_watcher_is_recognised() {
        let argv = v(&[
            "/usr/local/sbin/haseed-haproxy-watch",
            "8404",
            "/haseed-alive",
            "/var/lib/haseed/haproxy-unhealthy",
            "100",
            "200",
            "2",
            "192.168.3.242",
        ]);
        let w = Watch::recognise(&argv).expect("the watcher");
        assert_eq!((w.every_ms, w.timeout_ms, w.fall), (100, 200, 2));
        // 100 ms to the next question, two timeouts of 200 ms.
        assert_eq!(w.detect_ms(), 500);
        let home = Path::new("/tmp/lab/lb1");
        assert_eq!(
            w.lab_argv(Path::new("/tmp/lab/lb1/w"), home),
            v(&[
                "/bin/sh",
                "/tmp/lab/lb1/w",
                "8404",
                "/haseed-alive",
                "/tmp/lab/lb1/var-lib-haseed/haproxy-unhealthy",
                "100",
                "200",
                "2",
                "192.168.3.242",
            ])
        );
        // The script the host runs is the one the policy ships.
        assert!(WATCH_SCRIPT.starts_with("#!/bin/sh\n"));
        let bad = |i: usize, word: &str| {
            let mut a = argv.clone();
            a[i] = word.into();
            a
        };
        for a in [
            bad(0, "/bin/sh"),
            bad(1, "0"),
            bad(2, "/x;reboot"),
            bad(3, "/etc/passwd"),
            bad(3, "/var/lib/haseed/../x"),
            bad(4, "0"),
            bad(4, "0.1"),
            bad(4, "0100"),
            bad(5, "99999"),
            bad(6, "0"),
            bad(7, "example.com"),
            bad(7, "192.168.3.242; id"),
            v(&["/usr/local/sbin/haseed-haproxy-watch", "8404"]),
        ] {
            assert!(Watch::recognise(&a).is_err(), "{a:?} was accepted");
        }
    }

    #[test]
    fn only_known_checks_are_run() {
        assert_eq!(
            Check::recognise(&v(&["/usr/bin/pgrep", "-x", "haproxy"])),
            Ok(Check::HaproxyProcess)
        );
        let http = v(&[
            "/usr/bin/curl",
            "--silent",
            "--fail",
            "--output",
            "/dev/null",
            "--max-time",
            "1",
            "http://127.0.0.1:8404/haseed-alive",
        ]);
        let c = Check::recognise(&http).expect("http");
        assert_eq!(c.lab_argv(7), http);
        // Without --fail (any HTTP answer passes): the same check, kept so.
        let answer: Vec<String> = http.iter().filter(|w| *w != "--fail").cloned().collect();
        let c = Check::recognise(&answer).expect("http without --fail");
        assert_eq!(c.lab_argv(7), answer);
        assert_eq!(
            Check::HaproxyProcess.lab_argv(42),
            v(&[
                "/usr/bin/pgrep",
                "--nslist",
                "net",
                "--ns",
                "42",
                "-x",
                "haproxy"
            ])
        );
        for bad in [
            v(&["/usr/bin/touch", "/tmp/x"]),
            v(&["/usr/bin/pgrep", "-x", "sshd"]),
            v(&[
                "/usr/bin/curl",
                "--silent",
                "--fail",
                "--output",
                "/etc/passwd",
                "--max-time",
                "1",
                "http://127.0.0.1:8404/x",
            ]),
            v(&[
                "/usr/bin/curl",
                "--silent",
                "--fail",
                "--output",
                "/dev/null",
                "--max-time",
                "1",
                "http://10.0.0.1:8404/x",
            ]),
        ] {
            assert!(Check::recognise(&bad).is_err(), "{bad:?} was accepted");
        }
    }
}
