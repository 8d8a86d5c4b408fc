//! The way to a node: the system's OpenSSH client, and the script it runs there.
//!
//! `ssh -l USER -- ADDRESS sudo -n sh -s` with the script on stdin: host keys are checked
//! against known_hosts with `StrictHostKeyChecking=yes` (an unknown or changed key is refused,
//! never accepted), `BatchMode=yes` (no password or passphrase prompt can hang a roll), the
//! key from `--identity`, else the user's agent and ssh config. The script is `node.sh`'s
//! functions plus one function of calls made here, run only once it has arrived whole (a
//! transfer cut short is a syntax error in the shell, not half a run). Nothing is run on the
//! build machine but `ssh` itself, with the node's user and address as plain arguments after
//! `-l` and `--`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// node.sh: the functions the node runs.
const NODE_SH: &str = include_str!("node.sh");

/// How to reach nodes (the command line's `--identity`, `--known-hosts`).
#[derive(Clone, Debug, Default)]
pub struct Ssh {
    /// `ssh -i FILE`; none: the agent and the user's ssh config.
    pub identity: Option<PathBuf>,
    /// `UserKnownHostsFile`; none: ssh's own (~/.ssh/known_hosts).
    pub known_hosts: Option<PathBuf>,
    /// `ConnectTimeout` in seconds.
    pub connect_timeout: u32,
}

/// One node as ssh reaches it.
#[derive(Clone, Debug)]
pub struct Target {
    pub node: String,
    pub user: String,
    pub address: String,
}

/// What the node said: its `@haseed` lines, and everything else it printed.
#[derive(Debug, Default)]
pub struct Reply {
    pub lines: Vec<Vec<String>>,
    pub status: Option<i32>,
}

/// Why a node could not be reached or could not run the script, said for the user.
#[derive(Debug, thiserror::Error)]
#[error("node {node} ({address}): {message}")]
pub struct RemoteError {
    pub node: String,
    pub address: String,
    pub message: String,
}

impl Ssh {
    fn command(&self, t: &Target) -> Command {
        let mut c = Command::new("ssh");
        c.args([
            "-T",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .args([
            "-o",
            &format!("ConnectTimeout={}", self.connect_timeout.max(1)),
        ])
        // A node that stops answering mid-apply is noticed in 15 s, and the node side
        // rolls back when the connection goes (node.sh, SIGHUP/SIGPIPE).
        .args(["-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"])
        .args(["-o", "LogLevel=ERROR"]);
        if let Some(k) = &self.known_hosts {
            c.arg("-o")
                .arg(format!("UserKnownHostsFile={}", k.display()));
        }
        if let Some(i) = &self.identity {
            c.arg("-o").arg("IdentitiesOnly=yes").arg("-i").arg(i);
        }
        c.arg("-l").arg(&t.user).arg("--").arg(&t.address);
        if t.user == "root" {
            c.args(["sh", "-s"]);
        } else {
            c.args(["sudo", "-n", "sh", "-s"]);
        }
        c
    }

    /// Runs `body` (calls of node.sh's functions) on the node, within `limit`.
    pub fn run(&self, t: &Target, body: &str, limit: Duration) -> Result<Reply, RemoteError> {
        let script = script(body);
        let err = |message: String| RemoteError {
            node: t.node.clone(),
            address: t.address.clone(),
            message,
        };
        let mut child = self
            .command(t)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                err(format!(
                    "cannot run ssh ({e}): install the OpenSSH client (Debian: apt install openssh-client)"
                ))
            })?;
        let mut stdin = child.stdin.take().expect("piped");
        let mut stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(script.as_bytes());
        });
        let out = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = stdout.read_to_end(&mut s);
            s
        });
        let errs = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = stderr.read_to_end(&mut s);
            s
        });
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if started.elapsed() > limit => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(err(format!(
                        "no answer within {} s: the connection was closed (the node rolls back what it had not finished)",
                        limit.as_secs()
                    )));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(err(format!("waiting for ssh: {e}"))),
            }
        };
        let _ = writer.join();
        let out = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
        let errs = String::from_utf8_lossy(&errs.join().unwrap_or_default()).into_owned();
        let code = status.code();
        if code == Some(255) {
            return Err(err(ssh_failure(t, self, &errs)));
        }
        if let Some(m) = sudo_failure(t, &errs) {
            return Err(err(m));
        }
        let lines: Vec<Vec<String>> = out
            .lines()
            .filter_map(|l| l.strip_prefix("@haseed "))
            .map(|l| l.split(' ').map(str::to_string).collect())
            .collect();
        if lines.is_empty() && code != Some(0) {
            return Err(err(format!(
                "the node's shell failed (exit {}): {}",
                code.map_or("by a signal".into(), |c| c.to_string()),
                last_lines(&format!("{out}{errs}"), 6)
            )));
        }
        Ok(Reply {
            lines,
            status: code,
        })
    }
}

/// node.sh, then `body` as one function called at the end: the shell parses the function
/// whole before it runs any of it.
pub fn script(body: &str) -> String {
    format!("{NODE_SH}\nhaseed_main() {{\n{body}}}\nhaseed_main\n")
}

/// `word` quoted for the node's shell.
pub fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The last `n` non-empty lines of a tool's output, on one line (for an error).
pub(crate) fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// ssh's own failure (exit 255), as what happened and what to do.
fn ssh_failure(t: &Target, ssh: &Ssh, stderr: &str) -> String {
    let known = ssh
        .known_hosts
        .as_ref()
        .map_or("~/.ssh/known_hosts".to_string(), |k| {
            k.display().to_string()
        });
    let said = last_lines(stderr, 3);
    if stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") {
        format!(
            "its host key does not match the one in {known}: refused (someone may be \
             intercepting the connection, or the node was re-flashed). If you re-flashed it, \
             remove the old key with `ssh-keygen -R {a}` and check the new one with `ssh {u}@{a}` \
             before running haseed again",
            a = t.address,
            u = t.user
        )
    } else if stderr.contains("Host key verification failed")
        || stderr.contains("No ") && stderr.contains("host key is known")
    {
        format!(
            "its host key is not in {known}: haseed never accepts an unknown key. Connect once \
             with `ssh {u}@{a}` and check the fingerprint it shows (a card prints its keys on \
             the console at first boot), then run haseed again",
            a = t.address,
            u = t.user
        )
    } else if stderr.contains("Permission denied") {
        format!(
            "it refused the login as {u}: none of the keys offered is in its authorized_keys. \
             Pass the private key of the site's ssh_authorized_keys with --identity FILE (or \
             load it into ssh-agent); ssh said: {said}",
            u = t.user
        )
    } else if [
        "timed out",
        "No route to host",
        "Connection refused",
        "Network is unreachable",
        "Could not resolve",
        "Connection closed",
        "Connection reset",
    ]
    .iter()
    .any(|s| stderr.contains(s))
    {
        format!(
            "unreachable over SSH ({said}): check that it is up and on the network, and that \
             sshd runs on it"
        )
    } else {
        format!("ssh failed: {said}")
    }
}

/// sudo's refusal, which comes before the script runs.
fn sudo_failure(t: &Target, stderr: &str) -> Option<String> {
    let sudo = stderr.lines().find(|l| l.starts_with("sudo:"))?;
    let why = if sudo.contains("password is required") {
        "sudo asks for a password"
    } else if sudo.contains("not in the sudoers") || sudo.contains("may not run sudo") {
        "the user may not use sudo"
    } else if sudo.contains("command not found") || sudo.contains("not found") {
        "sudo is not installed"
    } else {
        sudo
    };
    Some(format!(
        "{why} ({}): haseed needs {u} to run commands as root without a password on the node \
         (haseed's seeds grant it: `sudo: ALL=(ALL) NOPASSWD:ALL`), or log in as root",
        sudo.trim(),
        u = t.user
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            node: "lb1".into(),
            user: "pi".into(),
            address: "192.168.3.241".into(),
        }
    }

    #[test]
    fn ssh_failures_say_what_to_do() {
        let ssh = Ssh::default();
        let t = target();
        let changed = "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
            @    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n\
            Host key verification failed.\n";
        let m = ssh_failure(&t, &ssh, changed);
        assert!(
            m.contains("does not match") && m.contains("ssh-keygen -R 192.168.3.241"),
            "{m}"
        );
        let unknown = "No ED25519 host key is known for 192.168.3.241 and you have requested strict checking.\nHost key verification failed.\n";
        let m = ssh_failure(&t, &ssh, unknown);
        assert!(
            m.contains("not in ~/.ssh/known_hosts") && m.contains("never accepts"),
            "{m}"
        );
        let m = ssh_failure(
            &t,
            &ssh,
            "pi@192.168.3.241: Permission denied (publickey).\n",
        );
        assert!(
            m.contains("refused the login as pi") && m.contains("--identity"),
            "{m}"
        );
        let m = ssh_failure(
            &t,
            &ssh,
            "ssh: connect to host 192.168.3.241 port 22: Connection timed out\n",
        );
        assert!(m.contains("unreachable") && m.contains("timed out"), "{m}");
        let m = ssh_failure(&t, &ssh, "kex_exchange_identification: banner line\n");
        assert!(
            m.starts_with("ssh failed: kex_exchange_identification"),
            "{m}"
        );
    }

    #[test]
    fn sudo_refusals_are_recognised() {
        let t = target();
        let m = sudo_failure(&t, "sudo: a password is required\n").unwrap();
        assert!(
            m.starts_with("sudo asks for a password") && m.contains("NOPASSWD"),
            "{m}"
        );
        let m = sudo_failure(&t, "sudo: pi is not in the sudoers file.\n").unwrap();
        assert!(m.starts_with("the user may not use sudo"), "{m}");
        assert!(sudo_failure(&t, "haproxy: [ALERT] parsing\n").is_none());
    }

    #[test]
    fn the_command_line_keeps_site_words_as_arguments() {
        let ssh = Ssh {
            identity: Some("/k/id".into()),
            known_hosts: Some("/k/known".into()),
            connect_timeout: 7,
        };
        let t = Target {
            node: "lb1".into(),
            user: "-oProxyCommand=x".into(),
            address: "-oProxyCommand=y".into(),
        };
        let c = ssh.command(&t);
        let args: Vec<String> = c.get_args().map(|a| a.to_string_lossy().into()).collect();
        let l = args.iter().position(|a| a == "-l").unwrap();
        assert_eq!(args[l + 1], "-oProxyCommand=x");
        assert_eq!(args[l + 2], "--");
        assert_eq!(args[l + 3], "-oProxyCommand=y");
        assert!(args.contains(&"StrictHostKeyChecking=yes".to_string()));
        assert!(args.contains(&"UserKnownHostsFile=/k/known".to_string()));
        assert!(args.contains(&"ConnectTimeout=7".to_string()));
        assert_eq!(&args[args.len() - 4..], ["sudo", "-n", "sh", "-s"]);
    }

    #[test]
    fn quoting_survives_the_node_shell() {
        let body = format!("printf '%s\\n' {}\n", quote("a'b $(x) \"c\""));
        let o = Command::new("sh")
            .arg("-c")
            .arg(format!("haseed_main() {{\n{body}}}\nhaseed_main"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&o.stdout), "a'b $(x) \"c\"\n");
    }

    #[test]
    fn a_script_cut_short_runs_nothing() {
        let whole = script("echo first\necho second\n");
        let cut = &whole[..whole.len() - "second\n}\nhaseed_main\n".len()];
        let o = Command::new("sh")
            .arg("-s")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().unwrap().write_all(cut.as_bytes())?;
                c.wait_with_output()
            })
            .unwrap();
        assert!(!String::from_utf8_lossy(&o.stdout).contains("first"));
        assert!(!o.status.success());
    }
}
