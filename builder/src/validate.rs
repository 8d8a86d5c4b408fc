//! Runs the real validators on a built node directory (`DIR/N/`):
//!
//! - `haproxy -c -dW -f files/etc/haproxy/haproxy.cfg` (warnings are fatal);
//! - `keepalived -t -f files/etc/keepalived/keepalived.conf`, inside a throwaway network namespace
//!   that holds every interface the config names (keepalived rejects unknown interfaces), and, when
//!   the config references scripts that live in the node's `files/` tree, inside a private mount
//!   namespace where those files appear at their node paths (so `enable_script_security` checks the
//!   real scripts). Needs root;
//! - `cloud-init schema --config-file` on `user-data` (gzip and MIME multi-part are unpacked; every
//!   cloud-config part is checked), `cloud-init devel net-convert` on `network-config`;
//! - NoCloud seed shape: `meta-data` has an `instance-id`, `network-config` starts with `network:`.
//!
//! A missing tool is an error ([`MissingTools`], naming the Debian package), never a silent skip.
//! Validators of one node run sequentially; callers may validate nodes in parallel.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// One validator run on one file of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub node: String,
    /// "haproxy" | "keepalived" | "cloud-init" | "nocloud"
    pub validator: &'static str,
    pub file: PathBuf,
    pub ok: bool,
    /// Combined stdout+stderr of the tool (plus haseed's own notes), trimmed.
    pub output: String,
}

/// Absolute paths of the validator tools.
#[derive(Debug, Clone)]
pub struct Validators {
    pub haproxy: PathBuf,
    pub keepalived: PathBuf,
    pub cloud_init: PathBuf,
    pub ip: PathBuf,
    /// util-linux `unshare`: private mount namespace for keepalived's script checks.
    pub unshare: PathBuf,
}

/// A validator tool that is not installed, with the Debian package that provides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingTool {
    pub tool: &'static str,
    pub package: &'static str,
}

/// Every validator tool that could not be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingTools {
    pub missing: Vec<MissingTool>,
}

impl fmt::Display for MissingTools {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tools: Vec<String> = self
            .missing
            .iter()
            .map(|m| format!("`{}` (Debian package {})", m.tool, m.package))
            .collect();
        let mut packages: Vec<&str> = self.missing.iter().map(|m| m.package).collect();
        packages.dedup();
        write!(
            f,
            "validator tools not found on PATH, /usr/sbin or /sbin: {}; install them with \
             `apt-get install {}` (or run .ci/install-deps once)",
            tools.join(", "),
            packages.join(" ")
        )
    }
}

impl std::error::Error for MissingTools {}

/// (tool, Debian package)
const TOOLS: [(&str, &str); 5] = [
    ("haproxy", "haproxy"),
    ("keepalived", "keepalived"),
    ("cloud-init", "cloud-init"),
    ("ip", "iproute2"),
    ("unshare", "util-linux"),
];

impl Validators {
    /// Looks every tool up on `PATH`, then in the sbin directories (often not on a user's PATH).
    pub fn find() -> Result<Validators, MissingTools> {
        let mut found = Vec::new();
        let mut missing = Vec::new();
        for (tool, package) in TOOLS {
            match find_tool(tool) {
                Some(p) => found.push(p),
                None => missing.push(MissingTool { tool, package }),
            }
        }
        if !missing.is_empty() {
            return Err(MissingTools { missing });
        }
        let mut it = found.into_iter();
        let mut next = || it.next().expect("one path per tool");
        Ok(Validators {
            haproxy: next(),
            keepalived: next(),
            cloud_init: next(),
            ip: next(),
            unshare: next(),
        })
    }
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for d in ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        dirs.push(PathBuf::from(d));
    }
    dirs.into_iter()
        .filter(|d| d.is_absolute())
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Whether this process runs with effective uid 0 (from `/proc/self/status`).
pub(crate) fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|rest| rest.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Runs every applicable validator on `node_dir` (the builder's `DIR/N/`), sequentially.
///
/// Validation outcomes are [`Finding`]s (`ok == false` for a rejected file); `Err` means a tool
/// could not be run at all or the directory could not be read.
pub fn validate_node(v: &Validators, node: &str, node_dir: &Path) -> Result<Vec<Finding>> {
    anyhow::ensure!(
        node_dir.is_dir(),
        "node directory {} does not exist",
        node_dir.display()
    );
    let root = is_root();
    let mut findings = Vec::new();
    if let Some(f) = validate_haproxy(v, node, node_dir, root)? {
        findings.push(f);
    }
    if let Some(f) = validate_keepalived(v, node, node_dir, root, false)? {
        findings.push(f);
    }
    findings.extend(validate_user_data(v, node, node_dir)?);
    findings.extend(validate_nocloud(v, node, node_dir)?);
    Ok(findings)
}

// ---------------------------------------------------------------------------------------------
// Running tools

const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

struct Outcome {
    /// None: killed by a signal.
    code: Option<i32>,
    output: String,
}

impl Outcome {
    fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs `cmd` with stdout and stderr interleaved into one buffer, stdin closed, and a timeout.
fn run(cmd: &mut Command) -> Result<Outcome> {
    let what = format!("{cmd:?}");
    let mut sink = tempfile::tempfile().context("creating a temporary file for tool output")?;
    cmd.stdin(Stdio::null())
        .stdout(sink.try_clone()?)
        .stderr(sink.try_clone()?);
    let mut child = cmd.spawn().with_context(|| format!("running {what}"))?;
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() > TOOL_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("{what} did not finish within {}s", TOOL_TIMEOUT.as_secs());
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    };
    sink.seek(SeekFrom::Start(0))?;
    let mut raw = Vec::new();
    sink.read_to_end(&mut raw)?;
    Ok(Outcome {
        code: status.code(),
        output: String::from_utf8_lossy(&raw).trim().to_string(),
    })
}

fn describe_exit(tool: &str, code: Option<i32>) -> String {
    match code {
        Some(c) => format!("{tool} exited with status {c}"),
        None => format!("{tool} was killed by a signal"),
    }
}

fn join_output(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------------------------
// Staging node files (scripts, certificates, ...) at their node paths in a private mount namespace

/// Directories to overlay: (node tree directory, host directory it is mounted over).
#[derive(Debug, Default, PartialEq, Eq)]
struct Staging {
    mounts: Vec<(PathBuf, PathBuf)>,
    notes: Vec<String>,
}

/// Absolute paths mentioned in `config` (unquoted or inside quotes) that exist in the node's
/// `files/` tree. Comments are included on purpose: a path that only appears there costs one
/// harmless overlay, while a missed one would be a false failure.
fn node_paths_in(config: &str, files: &Path) -> BTreeSet<PathBuf> {
    config
        .split(|c: char| c.is_whitespace() || c == '"' || c == '\'')
        .filter(|t| t.starts_with('/') && t.len() > 1)
        .map(Path::new)
        .filter(|p| {
            p.components()
                .skip(1)
                .all(|c| matches!(c, Component::Normal(_)))
        })
        .filter(|p| {
            let rel = p.strip_prefix("/").expect("absolute");
            fs::symlink_metadata(files.join(rel)).is_ok()
        })
        .map(Path::to_path_buf)
        .collect()
}

/// For every node path, the deepest directory above it that exists on this host: that directory
/// is overlaid with its node counterpart (node entries on top, host entries still visible).
fn plan_staging(paths: &BTreeSet<PathBuf>, files: &Path) -> Staging {
    let mut st = Staging::default();
    let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
    for p in paths {
        let rel = p.strip_prefix("/").expect("absolute");
        let mut d: &Path = if files.join(rel).is_dir() {
            p
        } else {
            p.parent().unwrap_or(Path::new("/"))
        };
        while !d.is_dir() {
            d = d.parent().unwrap_or(Path::new("/"));
        }
        if d == Path::new("/") {
            st.notes.push(format!(
                "haseed: cannot make {} visible (no directory above it exists on this host)",
                p.display()
            ));
            continue;
        }
        dirs.insert(d.to_path_buf());
    }
    // An overlay of a directory already brings its subdirectories along.
    let all: Vec<PathBuf> = dirs.iter().cloned().collect();
    for d in all {
        if !dirs.iter().any(|o| o != &d && d.starts_with(o)) {
            let rel = d.strip_prefix("/").expect("absolute");
            st.mounts.push((files.join(rel), d));
        }
    }
    st
}

/// `sh -c` program run by `unshare --mount --propagation private`: arguments are
/// `SCRATCH [MODE NODE_DIR HOST_DIR]... -- COMMAND...`. MODE `overlay`: NODE_DIR is overlaid onto
/// HOST_DIR (read-only overlayfs, node entries on top), falling back to `copy` when overlayfs is
/// unavailable. MODE `copy`: both are copied into a tmpfs and the copy is bind-mounted onto
/// HOST_DIR. The mounts vanish with the namespace.
const STAGE_SCRIPT: &str = r#"set -u
scratch=$1; shift
n=0
while [ "$1" != "--" ]; do
  mode=$1; node=$2; host=$3; shift 3
  if [ "$mode" = overlay ] && mount -t overlay haseed-val -o "lowerdir=$node:$host" "$host" 2>/dev/null; then
    continue
  fi
  if [ "$n" = 0 ]; then
    mount -t tmpfs -o mode=0755 haseed-val "$scratch" || { echo "haseed: cannot mount a tmpfs on $scratch" >&2; exit 125; }
  fi
  n=$((n + 1)); d=$scratch/$n
  { mkdir "$d" && cp -a "$host/." "$d/" && cp -a "$node/." "$d/" && mount --bind "$d" "$host"; } ||
    { echo "haseed: cannot make $node visible at $host" >&2; exit 125; }
done
shift
exec "$@"
"#;

/// Builds the command running `tool args...` with the staged node directories visible;
/// `prefix` (e.g. `ip netns exec NS`) goes in front. Without staging, runs the tool directly.
fn staged_command(
    v: &Validators,
    prefix: &[&std::ffi::OsStr],
    staging: &Staging,
    scratch: &Path,
    force_copy: bool,
    tool: &Path,
    args: &[&std::ffi::OsStr],
) -> Command {
    let mut argv: Vec<std::ffi::OsString> = prefix.iter().map(|s| s.into()).collect();
    if !staging.mounts.is_empty() {
        argv.push(v.unshare.clone().into());
        argv.extend(["--mount", "--propagation", "private", "sh", "-c"].map(Into::into));
        argv.push(STAGE_SCRIPT.into());
        argv.push("sh".into());
        argv.push(scratch.into());
        for (node, host) in &staging.mounts {
            // overlayfs mount options cannot carry these characters: copy instead.
            let awkward = [node, host]
                .iter()
                .any(|p| p.to_string_lossy().contains([',', ':', '\\']));
            argv.push(
                if force_copy || awkward {
                    "copy"
                } else {
                    "overlay"
                }
                .into(),
            );
            argv.push(node.into());
            argv.push(host.into());
        }
        argv.push("--".into());
    }
    argv.push(tool.into());
    argv.extend(args.iter().map(|s| s.into()));
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    cmd
}

// ---------------------------------------------------------------------------------------------
// haproxy

pub(crate) fn validate_haproxy(
    v: &Validators,
    node: &str,
    node_dir: &Path,
    root: bool,
) -> Result<Option<Finding>> {
    let files = node_dir.join("files");
    let cfg = files.join("etc/haproxy/haproxy.cfg");
    if !cfg.is_file() {
        return Ok(None);
    }
    let text = fs::read_to_string(&cfg).with_context(|| format!("reading {}", cfg.display()))?;
    let mut staging = plan_staging(&node_paths_in(&text, &files), &files);
    if !root && !staging.mounts.is_empty() {
        staging.notes.push(format!(
            "haseed: not root, so files the config references were not made visible at their \
             node paths: {}",
            staging
                .mounts
                .iter()
                .map(|(_, h)| h.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        staging.mounts.clear();
    }
    let scratch = tempfile::tempdir()?;
    let args: [&std::ffi::OsStr; 4] = ["-c".as_ref(), "-dW".as_ref(), "-f".as_ref(), cfg.as_ref()];
    let out = run(&mut staged_command(
        v,
        &[],
        &staging,
        scratch.path(),
        false,
        &v.haproxy,
        &args,
    ))?;
    // Drop haproxy's banner lines, which only carry its version and a pid.
    let tool_out: Vec<&str> = out
        .output
        .lines()
        .filter(|l| {
            !(l.starts_with("[NOTICE]")
                && (l.contains("haproxy version is") || l.contains("path to executable is")))
        })
        .collect();
    let status = if out.ok() {
        String::new()
    } else {
        describe_exit("haproxy -c -dW", out.code)
    };
    Ok(Some(Finding {
        node: node.to_string(),
        validator: "haproxy",
        file: cfg,
        ok: out.ok(),
        output: join_output(&[&staging.notes.join("\n"), &tool_out.join("\n"), &status]),
    }))
}

// ---------------------------------------------------------------------------------------------
// keepalived

/// Splits a keepalived config line into tokens: quoted strings are one token, `{` and `}` are
/// tokens of their own, a token starting with `#` or `!` starts a comment.
fn keepalived_tokens(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let flush = |cur: &mut String, out: &mut Vec<String>| {
        if !cur.is_empty() {
            out.push(std::mem::take(cur));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '#' | '!' if cur.is_empty() => break,
            '"' => {
                for q in chars.by_ref() {
                    if q == '"' {
                        break;
                    }
                    cur.push(q);
                }
                flush(&mut cur, &mut out);
            }
            '{' | '}' => {
                flush(&mut cur, &mut out);
                out.push(c.to_string());
            }
            c if c.is_whitespace() => flush(&mut cur, &mut out),
            c => cur.push(c),
        }
    }
    flush(&mut cur, &mut out);
    out
}

/// Every interface name the config refers to: `interface NAME`, `default_interface NAME`,
/// `dev NAME` (addresses and routes) and the entries of `track_interface { ... }` blocks.
fn keepalived_interfaces(conf: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut depth = 0usize;
    let mut track_depth: Option<usize> = None;
    let mut expect_track_block = false;
    for line in conf.lines() {
        let toks = keepalived_tokens(line);
        let mut first = true;
        let mut i = 0;
        while i < toks.len() {
            let t = toks[i].as_str();
            match t {
                "{" => {
                    depth += 1;
                    if expect_track_block {
                        track_depth = Some(depth);
                        expect_track_block = false;
                    }
                }
                "}" => {
                    if track_depth == Some(depth) {
                        track_depth = None;
                    }
                    depth = depth.saturating_sub(1);
                }
                _ => {
                    if track_depth == Some(depth) {
                        if first {
                            out.insert(t.to_string());
                        }
                    } else if matches!(t, "interface" | "default_interface" | "dev") {
                        if let Some(name) = toks.get(i + 1).filter(|n| *n != "{" && *n != "}") {
                            out.insert(name.clone());
                            i += 1;
                        }
                    } else if matches!(t, "track_interface") {
                        expect_track_block = true;
                    }
                    first = false;
                }
            }
            i += 1;
        }
    }
    out
}

static NETNS_COUNTER: AtomicU64 = AtomicU64::new(0);
static SWEEP: Once = Once::new();

/// A network namespace that is deleted (with every link in it) when dropped.
struct Netns<'a> {
    ip: &'a Path,
    name: String,
}

impl<'a> Netns<'a> {
    fn create(ip: &'a Path) -> Result<std::result::Result<Netns<'a>, String>> {
        SWEEP.call_once(|| sweep_stale_netns(ip));
        let name = format!(
            "haseed-val-{}-{}",
            std::process::id(),
            NETNS_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let out = run(Command::new(ip).args(["netns", "add", &name]))?;
        if !out.ok() {
            return Ok(Err(join_output(&[
                &format!("haseed: cannot create network namespace {name}:"),
                &out.output,
            ])));
        }
        Ok(Ok(Netns { ip, name }))
    }
}

impl Drop for Netns<'_> {
    fn drop(&mut self) {
        let _ = Command::new(self.ip)
            .args(["netns", "delete", &self.name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Deletes namespaces left behind by validator processes that were killed before cleaning up
/// (`haseed-val-PID-N` whose PID no longer exists).
fn sweep_stale_netns(ip: &Path) {
    let Ok(entries) = fs::read_dir("/run/netns") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(rest) = name.strip_prefix("haseed-val-") else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new(ip)
                .args(["netns", "delete", &name])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

pub(crate) fn validate_keepalived(
    v: &Validators,
    node: &str,
    node_dir: &Path,
    root: bool,
    force_copy: bool,
) -> Result<Option<Finding>> {
    let files = node_dir.join("files");
    let cfg = files.join("etc/keepalived/keepalived.conf");
    if !cfg.is_file() {
        return Ok(None);
    }
    let text = fs::read_to_string(&cfg).with_context(|| format!("reading {}", cfg.display()))?;
    let ifaces = keepalived_interfaces(&text);
    let finding = |ok: bool, output: String| Finding {
        node: node.to_string(),
        validator: "keepalived",
        file: cfg.clone(),
        ok,
        output,
    };
    if !root {
        return Ok(Some(finding(
            false,
            format!(
                "not validated: `keepalived -t` needs root, because it rejects interfaces that do \
                 not exist and haseed creates them ({}) in a throwaway network namespace, and \
                 makes the node's scripts visible at their paths in a private mount namespace; \
                 run the validation as root",
                ifaces.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
        )));
    }

    let ns = match Netns::create(&v.ip)? {
        Ok(ns) => ns,
        Err(msg) => return Ok(Some(finding(false, msg))),
    };
    let mut notes: Vec<String> = Vec::new();
    let mut peer_no = 0;
    for iface in ifaces.iter().filter(|i| i.as_str() != "lo") {
        let peer = loop {
            let p = format!("hsvp{peer_no}");
            peer_no += 1;
            if !ifaces.contains(&p) {
                break p;
            }
        };
        let out = run(Command::new(&v.ip).args([
            "-n", &ns.name, "link", "add", "name", iface, "type", "veth", "peer", "name", &peer,
        ]))?;
        if !out.ok() {
            notes.push(format!(
                "haseed: could not create interface {iface:?} for keepalived: {}",
                out.output
            ));
        }
    }

    let staging = plan_staging(&node_paths_in(&text, &files), &files);
    notes.extend(staging.notes.iter().cloned());
    let scratch = tempfile::tempdir()?;
    let prefix: [&std::ffi::OsStr; 4] = [
        v.ip.as_os_str(),
        "netns".as_ref(),
        "exec".as_ref(),
        ns.name.as_ref(),
    ];
    let args: [&std::ffi::OsStr; 3] = ["-t".as_ref(), "-f".as_ref(), cfg.as_ref()];
    let out = run(&mut staged_command(
        v,
        &prefix,
        &staging,
        scratch.path(),
        force_copy,
        &v.keepalived,
        &args,
    ))?;
    drop(ns);
    let status = match out.code {
        Some(0) => String::new(),
        Some(5) => "keepalived -t exited with status 5: configuration error".to_string(),
        Some(6) => "keepalived -t exited with status 6: scripts are configured but script \
                    security is not enabled (enable_script_security)"
            .to_string(),
        Some(125) => "haseed: could not stage the node's files for keepalived".to_string(),
        c => describe_exit("keepalived -t", c),
    };
    Ok(Some(finding(
        out.ok(),
        join_output(&[&notes.join("\n"), &out.output, &status]),
    )))
}

// ---------------------------------------------------------------------------------------------
// cloud-init user-data

/// Upper bound for decompressed user-data (cloud-init itself caps user-data far below this).
const MAX_USER_DATA: u64 = 64 << 20;

/// A piece of user-data cloud-init would treat as cloud-config, or why it cannot be checked.
#[derive(Debug, PartialEq, Eq)]
enum Doc {
    /// Cloud-config text (always starting with `#cloud-config` when it came from a MIME part
    /// typed text/cloud-config; a top-level document is passed on untouched).
    CloudConfig { label: String, data: Vec<u8> },
    /// A part that is not cloud-config (shell script, boothook, ...): not schema-checked.
    Skipped { label: String, what: String },
    /// A part that cloud-init could not decode either.
    Broken { label: String, error: String },
}

fn is_gzip(b: &[u8]) -> bool {
    b.starts_with(&[0x1f, 0x8b])
}

fn gunzip(b: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(b)
        .take(MAX_USER_DATA + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("cannot decompress gzip data: {e}"))?;
    if out.len() as u64 > MAX_USER_DATA {
        return Err(format!(
            "decompressed data exceeds {} MiB",
            MAX_USER_DATA >> 20
        ));
    }
    Ok(out)
}

/// Splits bytes into lines, each without its line ending, with the offset where it starts.
fn lines_with_offsets(b: &[u8]) -> Vec<(usize, &[u8])> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < b.len() {
        let end = b[start..]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(b.len(), |p| start + p);
        let mut line = &b[start..end];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        out.push((start, line));
        start = end + 1;
    }
    out
}

/// MIME headers: (lowercase name, value).
type Headers = Vec<(String, String)>;

/// Parses an RFC 822 header block: `(headers with lowercase names, body)`. None if the data does
/// not start with a header block.
fn split_headers(b: &[u8]) -> Option<(Headers, &[u8])> {
    let mut headers: Headers = Vec::new();
    let mut body_start = b.len();
    for (off, line) in lines_with_offsets(b) {
        if line.is_empty() {
            body_start = b[off..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |p| off + p + 1);
            break;
        }
        let text = std::str::from_utf8(line).ok()?;
        if text.starts_with([' ', '\t']) {
            let last = headers.last_mut()?;
            last.1.push(' ');
            last.1.push_str(text.trim());
            continue;
        }
        let (name, value) = text.split_once(':')?;
        if name.is_empty() || name.contains(char::is_whitespace) {
            return None;
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    if headers.is_empty() {
        return None;
    }
    Some((headers, &b[body_start.min(b.len())..]))
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// `text/x; a=1; boundary="b"` -> ("text/x", [("a","1"), ("boundary","b")])
fn parse_content_type(value: &str) -> (String, Vec<(String, String)>) {
    let mut it = value.split(';');
    let mime = it.next().unwrap_or("").trim().to_ascii_lowercase();
    let params = it
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            Some((k.trim().to_ascii_lowercase(), v.to_string()))
        })
        .collect();
    (mime, params)
}

/// The bodies of a multipart message's parts.
fn multipart_parts<'a>(body: &'a [u8], boundary: &str) -> Vec<&'a [u8]> {
    let delim = format!("--{boundary}");
    let close = format!("--{boundary}--");
    let mut parts = Vec::new();
    let mut current: Option<usize> = None;
    for (off, line) in lines_with_offsets(body) {
        let l = line.trim_ascii_end();
        let is_close = l == close.as_bytes();
        if l == delim.as_bytes() || is_close {
            if let Some(start) = current.take() {
                // The line break before a delimiter belongs to the delimiter.
                let mut end = off;
                if end > start && body[end - 1] == b'\n' {
                    end -= 1;
                    if end > start && body[end - 1] == b'\r' {
                        end -= 1;
                    }
                }
                parts.push(&body[start..end.max(start)]);
            }
            if is_close {
                break;
            }
            current = Some((off + line.len() + 1).min(body.len()));
            // `line` excludes a trailing \r: skip it too.
            if body.get(off + line.len()) == Some(&b'\r') {
                current = Some((off + line.len() + 2).min(body.len()));
            }
        }
    }
    parts
}

fn base64_decode(data: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &c in data {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            c if c.is_ascii_whitespace() => continue,
            c => return Err(format!("invalid base64 byte 0x{c:02x}")),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

fn looks_like_mime(b: &[u8]) -> bool {
    let head: Vec<u8> = b.iter().take(32).map(u8::to_ascii_lowercase).collect();
    head.starts_with(b"content-type:") || head.starts_with(b"mime-version:")
}

/// What cloud-init would find in `data`: gzip is unpacked, MIME multi-part is split (nested
/// multi-parts and gzip'd parts included), every part typed or starting as cloud-config is kept.
fn user_data_docs(data: &[u8], label: &str, depth: usize, out: &mut Vec<Doc>) {
    if depth > 8 {
        out.push(Doc::Broken {
            label: label.to_string(),
            error: "nested too deeply".to_string(),
        });
        return;
    }
    if is_gzip(data) {
        match gunzip(data) {
            Ok(plain) => user_data_docs(&plain, &format!("{label} (gzip)"), depth + 1, out),
            Err(error) => out.push(Doc::Broken {
                label: label.to_string(),
                error,
            }),
        }
        return;
    }
    if looks_like_mime(data) {
        if let Some((headers, body)) = split_headers(data) {
            let (mime, params) = parse_content_type(header(&headers, "content-type").unwrap_or(""));
            if mime.starts_with("multipart/") {
                let Some((_, boundary)) = params.iter().find(|(k, _)| k == "boundary") else {
                    out.push(Doc::Broken {
                        label: label.to_string(),
                        error: format!("{mime} without a boundary parameter"),
                    });
                    return;
                };
                let parts = multipart_parts(body, boundary);
                if parts.is_empty() {
                    out.push(Doc::Broken {
                        label: label.to_string(),
                        error: format!("{mime} message without any part"),
                    });
                }
                for (i, part) in parts.into_iter().enumerate() {
                    mime_part(part, &format!("{label} part {}", i + 1), depth + 1, out);
                }
                return;
            }
            // A single-part MIME message.
            mime_part(data, label, depth + 1, out);
            return;
        }
    }
    out.push(Doc::CloudConfig {
        label: label.to_string(),
        data: data.to_vec(),
    });
}

fn mime_part(part: &[u8], label: &str, depth: usize, out: &mut Vec<Doc>) {
    let (headers, body) = split_headers(part).unwrap_or((Vec::new(), part));
    let (mime, _) = parse_content_type(header(&headers, "content-type").unwrap_or("text/plain"));
    let label = format!("{label} ({mime})");
    let encoding = header(&headers, "content-transfer-encoding")
        .unwrap_or("7bit")
        .to_ascii_lowercase();
    let body = match encoding.as_str() {
        "7bit" | "8bit" | "binary" => body.to_vec(),
        "base64" => match base64_decode(body) {
            Ok(b) => b,
            Err(error) => {
                out.push(Doc::Broken { label, error });
                return;
            }
        },
        other => {
            out.push(Doc::Broken {
                label,
                error: format!("unsupported Content-Transfer-Encoding {other}"),
            });
            return;
        }
    };
    if mime.starts_with("multipart/")
        || is_gzip(&body)
        || matches!(
            mime.as_str(),
            "application/gzip" | "application/x-gzip" | "message/rfc822"
        )
    {
        let inner = if mime.starts_with("multipart/") {
            part.to_vec()
        } else {
            body
        };
        user_data_docs(&inner, &label, depth, out);
        return;
    }
    let starts_cloud_config = body.starts_with(b"#cloud-config");
    if mime == "text/cloud-config" || (mime == "text/plain" && starts_cloud_config) {
        let mut data = body;
        if !starts_cloud_config {
            data.splice(0..0, b"#cloud-config\n".iter().copied());
        }
        out.push(Doc::CloudConfig { label, data });
    } else {
        out.push(Doc::Skipped {
            label,
            what: "not cloud-config; not schema-checked".to_string(),
        });
    }
}

fn validate_user_data(v: &Validators, node: &str, node_dir: &Path) -> Result<Vec<Finding>> {
    let path = node_dir.join("user-data");
    let finding = |ok: bool, output: String| Finding {
        node: node.to_string(),
        validator: "cloud-init",
        file: path.clone(),
        ok,
        output,
    };
    if !path.is_file() {
        return Ok(vec![finding(false, "user-data is missing".to_string())]);
    }
    let raw = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let plain = !is_gzip(&raw) && !looks_like_mime(&raw);
    let mut docs = Vec::new();
    user_data_docs(&raw, "user-data", 0, &mut docs);

    let tmp = tempfile::tempdir()?;
    let mut findings = Vec::new();
    let mut skipped = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        match doc {
            Doc::CloudConfig { label, data } => {
                let file = if plain {
                    path.clone()
                } else {
                    let f = tmp.path().join(format!("user-data.{}", i + 1));
                    fs::File::create(&f)?.write_all(&data)?;
                    f
                };
                let out = run(Command::new(&v.cloud_init)
                    .args(["schema", "--config-file"])
                    .arg(&file))?;
                let status = if out.ok() {
                    String::new()
                } else {
                    describe_exit("cloud-init schema", out.code)
                };
                let (prefix, output) = if plain {
                    (String::new(), out.output.clone())
                } else {
                    // Name the part, not the temporary file it was checked from.
                    let tmp_name = file.to_string_lossy();
                    (format!("{label}:"), out.output.replace(&*tmp_name, &label))
                };
                findings.push(finding(out.ok(), join_output(&[&prefix, &output, &status])));
            }
            Doc::Skipped { label, what } => skipped.push(format!("{label}: {what}")),
            Doc::Broken { label, error } => {
                findings.push(finding(false, format!("{label}: {error}")))
            }
        }
    }
    if findings.is_empty() {
        findings.push(finding(
            true,
            join_output(&["user-data holds no cloud-config part", &skipped.join("\n")]),
        ));
    } else if !skipped.is_empty() {
        let last = findings.last_mut().expect("non-empty");
        last.output = join_output(&[&last.output, &skipped.join("\n")]);
    }
    Ok(findings)
}

// ---------------------------------------------------------------------------------------------
// NoCloud seed: meta-data, network-config

fn validate_nocloud(v: &Validators, node: &str, node_dir: &Path) -> Result<Vec<Finding>> {
    let mut findings = Vec::new();
    let finding = |validator: &'static str, file: &Path, ok: bool, output: String| Finding {
        node: node.to_string(),
        validator,
        file: file.to_path_buf(),
        ok,
        output,
    };

    let meta = node_dir.join("meta-data");
    findings.push(match fs::read(&meta) {
        Err(e) => finding(
            "nocloud",
            &meta,
            false,
            format!("cannot read meta-data: {e}"),
        ),
        Ok(b) => {
            let text = String::from_utf8_lossy(&b);
            match text
                .lines()
                .find_map(|l| l.strip_prefix("instance-id: "))
                .map(str::trim)
            {
                Some(id) if !id.is_empty() => {
                    finding("nocloud", &meta, true, format!("instance-id: {id}"))
                }
                _ => finding(
                    "nocloud",
                    &meta,
                    false,
                    "meta-data has no `instance-id: ` line (NoCloud requires an instance-id)"
                        .to_string(),
                ),
            }
        }
    });

    let net = node_dir.join("network-config");
    let shape = match fs::read(&net) {
        Err(e) => Err(format!("cannot read network-config: {e}")),
        Ok(b) => {
            let text = String::from_utf8_lossy(&b);
            let first = text
                .lines()
                .map(str::trim_end)
                .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
            match first {
                None => Err("network-config is empty".to_string()),
                Some(l) if l.starts_with("network:") => Ok(()),
                Some(l) => Err(format!(
                    "network-config must start with `network:`, found {l:?}"
                )),
            }
        }
    };
    let shape_ok = shape.is_ok();
    findings.push(finding(
        "nocloud",
        &net,
        shape_ok,
        shape
            .err()
            .unwrap_or_else(|| "starts with `network:`".to_string()),
    ));
    if shape_ok {
        // The parser cloud-init runs at boot: rejects bad versions, addresses, keys. The `eni`
        // renderer re-checks every address and, unlike `networkd`, needs no root (no chown);
        // `netplan` would pass a v2 config through unchecked.
        let outdir = tempfile::tempdir()?;
        let out = run(Command::new(&v.cloud_init)
            .args([
                "devel",
                "net-convert",
                "--kind",
                "yaml",
                "--output-kind",
                "eni",
            ])
            .args(["-D", "debian", "--network-data"])
            .arg(&net)
            .arg("-d")
            .arg(outdir.path()))?;
        let ok = out.ok();
        let output = if ok {
            out.output
        } else {
            // Keep the error, drop the Python traceback frames.
            let kept: Vec<&str> = out
                .output
                .lines()
                .filter(|l| !l.starts_with(' ') && !l.starts_with("Traceback"))
                .collect();
            join_output(&[
                &kept.join("\n"),
                &describe_exit("cloud-init devel net-convert", out.code),
            ])
        };
        findings.push(finding("cloud-init", &net, ok, output));
    }
    Ok(findings)
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tools() -> Validators {
        Validators::find().unwrap_or_else(|e| panic!("{e}"))
    }

    fn require_root() {
        assert!(
            is_root(),
            "this test runs `keepalived -t` in a throwaway network namespace, which needs root: \
             run the tests as root (CI does)"
        );
    }

    /// A node directory holding `files` (relative path, content, mode).
    fn node(files: &[(&str, &str, u32)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (rel, content, mode) in files {
            let p = dir.path().join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, content).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).unwrap();
        }
        dir
    }

    const HAPROXY_OK: &str = "\
global
    log /dev/log local0
    maxconn 4096

defaults
    mode tcp
    log global
    option tcplog
    retries 6
    timeout connect 5s
    timeout client 1m
    timeout server 1m

frontend k8s_api
    bind *:9000
    default_backend k8s_api

backend k8s_api
    balance roundrobin
    server m1 192.168.3.11:6443 check inter 3000ms rise 30 fall 3
    server m2 192.168.3.12:6443 check inter 3000ms rise 30 fall 3
";

    fn keepalived_conf(script: &str, vrid: u32) -> String {
        format!(
            "\
global_defs {{
    enable_script_security
    script_user root
}}

vrrp_script chk_haproxy {{
    script \"{script}\"
    interval 2
    fall 2
    rise 2
}}

vrrp_instance VI_1 {{
    state BACKUP
    interface eth0
    virtual_router_id {vrid}
    priority 100
    nopreempt
    advert_int 1
    virtual_ipaddress {{
        192.168.3.240/24 dev eth0
    }}
    track_interface {{
        eth1 weight 10
    }}
    track_script {{
        chk_haproxy
    }}
}}
"
        )
    }

    const USER_DATA_OK: &str = "\
#cloud-config
hostname: lb1
packages: [haproxy, keepalived]
write_files:
  - path: /etc/haproxy/haproxy.cfg
    content: |
      global
    permissions: '0644'
runcmd:
  - [systemctl, enable, --now, haproxy]
";

    const NETWORK_OK: &str = "\
network:
  version: 2
  ethernets:
    eth0:
      addresses: [192.168.3.21/24]
      routes:
        - to: 0.0.0.0/0
          via: 192.168.3.1
      nameservers:
        addresses: [192.168.3.1]
";

    fn find<'f>(findings: &'f [Finding], validator: &str) -> Vec<&'f Finding> {
        findings
            .iter()
            .filter(|f| f.validator == validator)
            .collect()
    }

    #[test]
    fn finds_all_tools() {
        let v = tools();
        for p in [&v.haproxy, &v.keepalived, &v.cloud_init, &v.ip, &v.unshare] {
            assert!(p.is_absolute() && is_executable(p), "{}", p.display());
        }
    }

    #[test]
    fn missing_tools_name_packages() {
        let e = MissingTools {
            missing: vec![
                MissingTool {
                    tool: "keepalived",
                    package: "keepalived",
                },
                MissingTool {
                    tool: "ip",
                    package: "iproute2",
                },
            ],
        };
        let s = e.to_string();
        assert!(s.contains("`ip` (Debian package iproute2)"), "{s}");
        assert!(s.contains("apt-get install keepalived iproute2"), "{s}");
    }

    #[test]
    fn haproxy_valid_passes_and_broken_fails() {
        let v = tools();
        let ok = node(&[("files/etc/haproxy/haproxy.cfg", HAPROXY_OK, 0o644)]);
        let f = validate_haproxy(&v, "lb1", ok.path(), is_root())
            .unwrap()
            .unwrap();
        assert!(f.ok, "{f:?}");

        let bogus = HAPROXY_OK.replace("option tcplog", "option bogus");
        let bad = node(&[("files/etc/haproxy/haproxy.cfg", &bogus, 0o644)]);
        let f = validate_haproxy(&v, "lb1", bad.path(), is_root())
            .unwrap()
            .unwrap();
        assert!(!f.ok);
        assert!(f.output.contains("unknown option 'bogus'"), "{}", f.output);
        assert!(!f.output.contains("haproxy version is"), "{}", f.output);

        // -dW: a warning fails validation too.
        let warn = HAPROXY_OK.replace("option tcplog", "option httplog");
        let bad = node(&[("files/etc/haproxy/haproxy.cfg", &warn, 0o644)]);
        let f = validate_haproxy(&v, "lb1", bad.path(), is_root())
            .unwrap()
            .unwrap();
        assert!(!f.ok, "{f:?}");
        assert!(f.output.contains("WARNING"), "{}", f.output);
    }

    #[test]
    fn haproxy_absent_is_not_validated() {
        let v = tools();
        let empty = node(&[]);
        assert_eq!(
            validate_haproxy(&v, "m1", empty.path(), true).unwrap(),
            None
        );
        assert_eq!(
            validate_keepalived(&v, "m1", empty.path(), true, false).unwrap(),
            None
        );
    }

    #[test]
    fn parses_keepalived_interfaces() {
        let conf = keepalived_conf("/usr/bin/pgrep -x haproxy", 51)
            + "# interface commented0\n! interface commented1\n\
               global_defs { default_interface eth9 }\n\
               vrrp_instance X { interface \"br0.10\" track_interface {\n  wlan0\n} }\n";
        let got: Vec<String> = keepalived_interfaces(&conf).into_iter().collect();
        assert_eq!(got, ["br0.10", "eth0", "eth1", "eth9", "wlan0"]);
    }

    #[test]
    fn keepalived_valid_passes_with_host_script() {
        require_root();
        let v = tools();
        let conf = keepalived_conf("/usr/bin/pgrep -x haproxy", 51);
        let n = node(&[("files/etc/keepalived/keepalived.conf", &conf, 0o644)]);
        let f = validate_keepalived(&v, "lb1", n.path(), true, false)
            .unwrap()
            .unwrap();
        assert!(f.ok, "{f:?}");
        assert_eq!(f.validator, "keepalived");
        assert_no_leftover_netns();
    }

    #[test]
    fn keepalived_bad_vrid_fails() {
        require_root();
        let v = tools();
        let conf = keepalived_conf("/usr/bin/pgrep -x haproxy", 300);
        let n = node(&[("files/etc/keepalived/keepalived.conf", &conf, 0o644)]);
        let f = validate_keepalived(&v, "lb1", n.path(), true, false)
            .unwrap()
            .unwrap();
        assert!(!f.ok);
        assert!(f.output.contains("300"), "{}", f.output);
        assert!(f.output.contains("status 5"), "{}", f.output);
        assert_no_leftover_netns();
    }

    #[test]
    fn keepalived_without_script_security_fails() {
        require_root();
        let v = tools();
        let conf = keepalived_conf("/usr/bin/pgrep -x haproxy", 51)
            .replace("    enable_script_security\n", "")
            .replace("    script_user root\n", "");
        let n = node(&[("files/etc/keepalived/keepalived.conf", &conf, 0o644)]);
        let f = validate_keepalived(&v, "lb1", n.path(), true, false)
            .unwrap()
            .unwrap();
        assert!(!f.ok);
        assert!(f.output.contains("status 6"), "{}", f.output);
    }

    const NODE_SCRIPT: &str = "/usr/local/lib/haseed/check-haproxy";

    #[test]
    fn keepalived_script_from_node_tree_passes() {
        require_root();
        let v = tools();
        assert!(
            !Path::new(NODE_SCRIPT).exists(),
            "{NODE_SCRIPT} exists on this host, so the test would prove nothing"
        );
        let conf = keepalived_conf(NODE_SCRIPT, 51);
        let script = "#!/bin/sh\nexec /usr/bin/pgrep -x haproxy >/dev/null\n";
        for force_copy in [false, true] {
            let n = node(&[
                ("files/etc/keepalived/keepalived.conf", &conf, 0o644),
                (&format!("files{NODE_SCRIPT}"), script, 0o755),
            ]);
            let f = validate_keepalived(&v, "lb1", n.path(), true, force_copy)
                .unwrap()
                .unwrap();
            assert!(f.ok, "force_copy={force_copy}: {f:?}");
        }
        assert!(
            !Path::new(NODE_SCRIPT).exists(),
            "staging leaked onto the host"
        );
        assert_no_leftover_netns();
    }

    #[test]
    fn keepalived_missing_or_unsafe_node_script_fails() {
        require_root();
        let v = tools();
        let conf = keepalived_conf(NODE_SCRIPT, 51);
        // Referenced, but not shipped in the node tree.
        let n = node(&[("files/etc/keepalived/keepalived.conf", &conf, 0o644)]);
        let f = validate_keepalived(&v, "lb1", n.path(), true, false)
            .unwrap()
            .unwrap();
        assert!(!f.ok, "{f:?}");
        assert!(f.output.contains("not found/accessible"), "{}", f.output);
        // Shipped, but writable by everyone: script security refuses it.
        let n = node(&[
            ("files/etc/keepalived/keepalived.conf", &conf, 0o644),
            (&format!("files{NODE_SCRIPT}"), "#!/bin/sh\nexit 0\n", 0o777),
        ]);
        let f = validate_keepalived(&v, "lb1", n.path(), true, false)
            .unwrap()
            .unwrap();
        assert!(!f.ok, "{f:?}");
    }

    #[test]
    fn keepalived_without_root_is_a_failure_not_a_pass() {
        let v = tools();
        let conf = keepalived_conf("/usr/bin/pgrep -x haproxy", 51);
        let n = node(&[("files/etc/keepalived/keepalived.conf", &conf, 0o644)]);
        let f = validate_keepalived(&v, "lb1", n.path(), false, false)
            .unwrap()
            .unwrap();
        assert!(!f.ok);
        assert!(f.output.contains("needs root"), "{}", f.output);
    }

    /// No namespace of this process is left once concurrent tests finished with theirs.
    fn assert_no_leftover_netns() {
        let prefix = format!("haseed-val-{}-", std::process::id());
        for _ in 0..200 {
            let Ok(entries) = fs::read_dir("/run/netns") else {
                return;
            };
            let left = entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(&prefix));
            if !left {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("network namespaces {prefix}* were left behind");
    }

    #[test]
    fn user_data_valid_passes_and_broken_fails() {
        let v = tools();
        let n = node(&[("user-data", USER_DATA_OK, 0o600)]);
        let f = validate_user_data(&v, "lb1", n.path()).unwrap();
        assert_eq!(f.len(), 1);
        assert!(f[0].ok, "{f:?}");

        let headerless = USER_DATA_OK.replace("#cloud-config\n", "");
        let n = node(&[("user-data", &headerless, 0o600)]);
        let f = validate_user_data(&v, "lb1", n.path()).unwrap();
        assert!(!f[0].ok);
        assert!(f[0].output.contains("#cloud-config"), "{}", f[0].output);

        let wrong_type = USER_DATA_OK.replace("packages: [haproxy, keepalived]", "packages: 5");
        let n = node(&[("user-data", &wrong_type, 0o600)]);
        let f = validate_user_data(&v, "lb1", n.path()).unwrap();
        assert!(!f[0].ok);
        assert!(f[0].output.contains("packages"), "{}", f[0].output);

        let n = node(&[]);
        let f = validate_user_data(&v, "lb1", n.path()).unwrap();
        assert!(!f[0].ok);
    }

    #[test]
    fn user_data_gzip_is_unpacked() {
        let v = tools();
        let gz = |s: &str| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(s.as_bytes()).unwrap();
            e.finish().unwrap()
        };
        for (text, want) in [(USER_DATA_OK, true), ("hostname: x\n", false)] {
            let dir = node(&[]);
            fs::write(dir.path().join("user-data"), gz(text)).unwrap();
            let f = validate_user_data(&v, "lb1", dir.path()).unwrap();
            assert_eq!(f.len(), 1);
            assert_eq!(f[0].ok, want, "{f:?}");
        }
    }

    fn multipart(parts: &[(&str, &str, &str)]) -> String {
        let mut s = String::from(
            "Content-Type: multipart/mixed; boundary=\"===BOUND==\"\r\nMIME-Version: 1.0\r\n\r\n",
        );
        for (ctype, encoding, body) in parts {
            s.push_str(&format!(
                "--===BOUND==\r\nContent-Type: {ctype}; charset=\"us-ascii\"\r\n\
                 Content-Transfer-Encoding: {encoding}\r\n\r\n{body}\r\n"
            ));
        }
        s.push_str("--===BOUND==--\r\n");
        s
    }

    fn b64(data: &[u8]) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let n =
                chunk.iter().fold(0u32, |a, &b| (a << 8) | u32::from(b)) << (8 * (3 - chunk.len()));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[test]
    fn base64_round_trip() {
        for s in ["", "a", "ab", "abc", "abcd", USER_DATA_OK] {
            assert_eq!(
                base64_decode(b64(s.as_bytes()).as_bytes()).unwrap(),
                s.as_bytes()
            );
        }
        assert!(base64_decode(b"ab$c").is_err());
    }

    #[test]
    fn user_data_multipart_checks_each_cloud_config_part() {
        let v = tools();
        let good = multipart(&[
            ("text/cloud-config", "7bit", USER_DATA_OK),
            ("text/x-shellscript", "7bit", "#!/bin/sh\necho hi\n"),
            // A typed part needs no #cloud-config line.
            (
                "text/cloud-config",
                "base64",
                &b64(b"ntp:\n  enabled: true\n"),
            ),
        ]);
        let n = node(&[("user-data", &good, 0o600)]);
        let f = validate_user_data(&v, "lb1", n.path()).unwrap();
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(f.iter().all(|f| f.ok), "{f:?}");
        assert!(
            f[0].output
                .starts_with("user-data part 1 (text/cloud-config):"),
            "{}",
            f[0].output
        );
        assert!(
            f[1].output.contains("part 2 (text/x-shellscript)"),
            "{}",
            f[1].output
        );

        let bad = multipart(&[
            ("text/cloud-config", "7bit", USER_DATA_OK),
            ("text/cloud-config", "7bit", "packages: 5\n"),
        ]);
        let n = node(&[("user-data", &bad, 0o600)]);
        let f = validate_user_data(&v, "lb1", n.path()).unwrap();
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(f[0].ok && !f[1].ok, "{f:?}");
        assert!(f[1].output.contains("part 2"), "{}", f[1].output);
    }

    #[test]
    fn multipart_parsing() {
        let m = multipart(&[
            ("text/cloud-config", "7bit", "a: 1\n"),
            ("text/plain", "7bit", "x"),
        ]);
        let (h, body) = split_headers(m.as_bytes()).unwrap();
        let (mime, params) = parse_content_type(header(&h, "content-type").unwrap());
        assert_eq!(mime, "multipart/mixed");
        assert_eq!(params, [("boundary".to_string(), "===BOUND==".to_string())]);
        let parts = multipart_parts(body, "===BOUND==");
        assert_eq!(parts.len(), 2);
        let (_, b1) = split_headers(parts[0]).unwrap();
        assert_eq!(b1, b"a: 1\n");
        let (_, b2) = split_headers(parts[1]).unwrap();
        assert_eq!(b2, b"x");
    }

    #[test]
    fn nocloud_seed_checks() {
        let v = tools();
        let n = node(&[
            (
                "meta-data",
                "instance-id: lb1-0123abcd\nlocal-hostname: lb1\n",
                0o644,
            ),
            ("network-config", NETWORK_OK, 0o644),
        ]);
        let f = validate_nocloud(&v, "lb1", n.path()).unwrap();
        assert_eq!(f.len(), 3, "{f:?}");
        assert!(f.iter().all(|f| f.ok), "{f:?}");
        assert_eq!(find(&f, "nocloud").len(), 2);

        let n = node(&[
            ("meta-data", "local-hostname: lb1\n", 0o644),
            ("network-config", "version: 2\n", 0o644),
        ]);
        let f = validate_nocloud(&v, "lb1", n.path()).unwrap();
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(f.iter().all(|f| !f.ok), "{f:?}");

        let bad_net = NETWORK_OK.replace("[192.168.3.21/24]", "[192.168.3.300/24]");
        let n = node(&[
            ("meta-data", "instance-id: x\n", 0o644),
            ("network-config", &bad_net, 0o644),
        ]);
        let f = validate_nocloud(&v, "lb1", n.path()).unwrap();
        let ci = find(&f, "cloud-init");
        assert_eq!(ci.len(), 1);
        assert!(!ci[0].ok, "{f:?}");
        assert!(!ci[0].output.contains("Traceback"), "{}", ci[0].output);
    }

    #[test]
    fn validate_node_runs_everything() {
        require_root();
        let v = tools();
        let conf = keepalived_conf(NODE_SCRIPT, 51);
        let n = node(&[
            ("files/etc/haproxy/haproxy.cfg", HAPROXY_OK, 0o644),
            ("files/etc/keepalived/keepalived.conf", &conf, 0o644),
            (&format!("files{NODE_SCRIPT}"), "#!/bin/sh\nexit 0\n", 0o755),
            ("user-data", USER_DATA_OK, 0o600),
            (
                "meta-data",
                "instance-id: lb1-1\nlocal-hostname: lb1\n",
                0o644,
            ),
            ("network-config", NETWORK_OK, 0o644),
        ]);
        let f = validate_node(&v, "lb1", n.path()).unwrap();
        let names: Vec<&str> = f.iter().map(|f| f.validator).collect();
        assert_eq!(
            names,
            [
                "haproxy",
                "keepalived",
                "cloud-init",
                "nocloud",
                "nocloud",
                "cloud-init"
            ]
        );
        assert!(f.iter().all(|f| f.ok && f.node == "lb1"), "{f:#?}");
    }

    #[test]
    fn staging_plan() {
        let n = node(&[
            ("files/usr/local/lib/haseed/a/check", "", 0o755),
            ("files/usr/local/lib/haseed/b", "", 0o755),
            ("files/etc/keepalived/notify.sh", "", 0o755),
        ]);
        let files = n.path().join("files");
        let conf = "script \"/usr/local/lib/haseed/a/check --x\"\nnotify /usr/local/lib/haseed/b\n\
                    notify_master \"/etc/keepalived/notify.sh MASTER\"\nscript \"/usr/bin/pgrep\"\n\
                    x /usr/local/lib/haseed/../../../etc/shadow\n";
        let paths = node_paths_in(conf, &files);
        assert_eq!(
            paths
                .iter()
                .map(|p| p.to_str().unwrap())
                .collect::<Vec<_>>(),
            [
                "/etc/keepalived/notify.sh",
                "/usr/local/lib/haseed/a/check",
                "/usr/local/lib/haseed/b"
            ]
        );
        let st = plan_staging(&paths, &files);
        assert!(st.notes.is_empty(), "{st:?}");
        let hosts: Vec<&Path> = st.mounts.iter().map(|(_, h)| h.as_path()).collect();
        // /etc/keepalived exists wherever keepalived is installed; /usr/local/lib/haseed
        // normally does not, so its deepest existing parent is overlaid once.
        assert!(hosts.contains(&Path::new("/etc/keepalived")), "{st:?}");
        assert_eq!(hosts.len(), 2, "{st:?}");
        for (node_dir, host) in &st.mounts {
            assert_eq!(node_dir, &files.join(host.strip_prefix("/").unwrap()));
        }
    }
}
