//! The lab's sandbox: every process the lab starts for a node (haproxy,
//! keepalived and what keepalived runs, each hook, the namespace anchors)
//! runs in a mount namespace of its own, with fewer capabilities than root.
//!
//! The lab runs as root on the build host, and the configurations it runs
//! come from plugins. `hooks.rs` lets only haseed's own typed hooks and
//! checks through; this is the second wall, for what gets past the first
//! (a bug there, or a daemon tricked through its configuration):
//! - **The file system** is a new root on a small tmpfs holding `/usr` (and
//!   the `/bin`, `/lib`... links or directories), a few public files of
//!   `/etc` (users and groups without their shadow files, the loader's cache,
//!   name service and protocol tables), `/var/lib/haproxy` (haproxy's empty
//!   chroot), a fresh `/proc` and a minimal `/dev`, all read-only; a private
//!   `/tmp` and `/run`; and the lab's own directory, the one writable place
//!   of the host. `/root`, `/home`, `/etc/shadow`, ssh host keys, the rest
//!   of `/etc`, `/var` and `/srv` are simply not there.
//! - **`/proc`** is mounted read-only (no `sysrq-trigger`, no
//!   `kernel/core_pattern`, which root could otherwise write without any
//!   capability), except `/proc/sys/net`, which always shows the writer's own
//!   network namespace: the hooks set `arp_ignore` there.
//! - **Capabilities**: the bounding set keeps only what VRRP and haproxy
//!   need ([`KEEP`]); no `CAP_SYS_ADMIN` (no remount, no new mount, no
//!   `setns` back out), no `CAP_SYS_PTRACE` (no `/proc/1/root` into the
//!   host's tree), no `CAP_DAC_OVERRIDE`, no module loading; `no_new_privs`
//!   so no setuid program gives them back.
//!
//! Not covered: the processes still see the host's process table (the lab
//! signals them by pid, and keepalived's `pgrep` checks compare network
//! namespaces); they run as uid 0, so a file of the lab's own directory is
//! theirs to write; the network namespaces are the lab's, never the host's.
//!
//! The namespace is built once, on a thread of its own (`unshare` of the
//! mount namespace and file system attributes touches only that thread), and
//! kept open by a file descriptor; each process joins it, and the node's
//! network namespace, between fork and exec.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use anyhow::{anyhow, Context};

/// Capabilities a sandboxed process keeps (numbers from
/// linux/capability.h): addresses, routes and sysctls of its own network
/// namespace (`CAP_NET_ADMIN`), VRRP's raw socket (`CAP_NET_RAW`), ports
/// below 1024 (`CAP_NET_BIND_SERVICE`), haproxy's `chroot` and its switch to
/// the `haproxy` user (`CAP_SYS_CHROOT`, `CAP_SETUID`, `CAP_SETGID`),
/// keepalived's scheduling priority and locked memory (`CAP_SYS_NICE`,
/// `CAP_IPC_LOCK`), haproxy's file descriptor limit (`CAP_SYS_RESOURCE`).
pub const KEEP: &[u32] = &[
    6,  // CAP_SETGID
    7,  // CAP_SETUID
    10, // CAP_NET_BIND_SERVICE
    12, // CAP_NET_ADMIN
    13, // CAP_NET_RAW
    14, // CAP_IPC_LOCK
    18, // CAP_SYS_CHROOT
    23, // CAP_SYS_NICE
    24, // CAP_SYS_RESOURCE
];

/// Public files and directories of `/etc` a daemon or a hook reads: the user
/// and group tables (haproxy's `user haproxy`, keepalived's `script_user`),
/// the loader, name service and protocol tables, iproute2's tables, time zone.
const ETC: &[&str] = &[
    "passwd",
    "group",
    "nsswitch.conf",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "host.conf",
    "hosts",
    "gai.conf",
    "protocols",
    "services",
    "localtime",
    "alternatives",
    "iproute2",
];

/// Top-level names of the host's programs and libraries: links (merged
/// `/usr`) are copied as links, directories bound read-only.
const PROGRAMS: &[&str] = &["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// Device nodes bound from the host's `/dev`.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom"];

/// A mount namespace holding the sandbox's root, and the capabilities its
/// processes keep.
pub struct Sandbox {
    mnt: OwnedFd,
    keep: u64,
    last_cap: u32,
}

/// A network namespace, opened once (`/run/netns/NAME`).
pub struct NetNs(OwnedFd);

impl NetNs {
    pub fn open(name: &str) -> anyhow::Result<NetNs> {
        let f = fs::File::open(Path::new("/run/netns").join(name))
            .with_context(|| format!("opening network namespace {name}"))?;
        Ok(NetNs(f.into()))
    }
}

impl Sandbox {
    /// Builds the sandbox's root. `writable`: the lab's directory, the only
    /// host path processes may write (seen at the same path inside).
    pub fn new(writable: &Path) -> anyhow::Result<Sandbox> {
        let stage = tempfile::Builder::new()
            .prefix("haseed-lab-root-")
            .tempdir()
            .context("creating the sandbox's staging directory")?;
        let (stage_path, writable) = (stage.path().to_path_buf(), writable.to_path_buf());
        let mnt = std::thread::spawn(move || build_root(&stage_path, &writable))
            .join()
            .map_err(|_| anyhow!("the sandbox's set-up thread panicked"))?
            .context("building the lab's sandbox (a mount namespace; needs root)")?;
        // The staging directory was a mount point only inside the new
        // namespace: on the host it is an empty directory.
        drop(stage);
        let last_cap = fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(40);
        // Only what this process has can be kept (a container may have
        // withheld some of KEEP).
        let permitted = fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("CapPrm:"))
                    .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            })
            .unwrap_or(0);
        Ok(Sandbox {
            mnt,
            keep: KEEP.iter().fold(0, |m, c| m | 1 << c) & permitted,
            last_cap,
        })
    }

    /// `program` (looked up on the sandbox's PATH) with `args`, started in
    /// the sandbox and in network namespace `net`.
    pub fn command(&self, net: &NetNs, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.args(args)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .current_dir("/");
        let (net, mnt, keep, last) = (
            net.0.as_raw_fd(),
            self.mnt.as_raw_fd(),
            self.keep,
            self.last_cap,
        );
        // SAFETY: between fork and exec the closure makes only raw system
        // calls (setns, chdir, prctl, capset) on descriptors this struct and
        // `net` keep open, and allocates nothing.
        unsafe {
            c.pre_exec(move || enter(net, mnt, keep, last));
        }
        c
    }
}

/// In the child, before exec: join the namespaces, then give up what the
/// sandbox does not keep. The order matters: `setns` needs `CAP_SYS_ADMIN`.
fn enter(net: i32, mnt: i32, keep: u64, last_cap: u32) -> io::Result<()> {
    let check = |r: libc::c_int| {
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    // SAFETY: plain system calls on valid descriptors and static strings.
    unsafe {
        check(libc::setns(net, libc::CLONE_NEWNET))?;
        check(libc::setns(mnt, libc::CLONE_NEWNS))?;
        check(libc::chdir(c"/".as_ptr()))?;
        for cap in 0..=last_cap {
            if keep & (1 << cap) == 0 {
                check(libc::prctl(
                    libc::PR_CAPBSET_DROP,
                    cap as libc::c_ulong,
                    0,
                    0,
                    0,
                ))?;
            }
        }
        // After exec a root process gets its bounding set as permitted and
        // effective capabilities; the inheritable set (emptied) adds none.
        let header = CapHeader {
            version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
            pid: 0,
        };
        let data = [
            CapData {
                effective: keep as u32,
                permitted: keep as u32,
                inheritable: 0,
            },
            CapData {
                effective: (keep >> 32) as u32,
                permitted: (keep >> 32) as u32,
                inheritable: 0,
            },
        ];
        if libc::syscall(libc::SYS_capset, &header, data.as_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn cstr(p: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::other("NUL in a path"))
}

fn mount(
    src: Option<&Path>,
    dst: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let src = src.map(cstr).transpose()?;
    let dst_c = cstr(dst)?;
    let fstype = fstype.map(|s| CString::new(s).expect("no NUL"));
    let data = data.map(|s| CString::new(s).expect("no NUL"));
    let ptr = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: NUL-terminated strings that outlive the call.
    let r = unsafe {
        libc::mount(
            ptr(&src),
            dst_c.as_ptr(),
            ptr(&fstype),
            flags,
            ptr(&data).cast(),
        )
    };
    if r == 0 {
        Ok(())
    } else {
        let e = io::Error::last_os_error();
        Err(io::Error::new(
            e.kind(),
            format!("mounting {}: {e}", dst.display()),
        ))
    }
}

/// Binds `src` on `dst`, then makes that mount read-only (or not), without
/// set-user-id programs, and without device nodes unless `device`.
fn bind(src: &Path, dst: &Path, read_only: bool, device: bool) -> io::Result<()> {
    mount(Some(src), dst, None, libc::MS_BIND | libc::MS_REC, None)?;
    let mut flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_NOSUID;
    if read_only {
        flags |= libc::MS_RDONLY;
    }
    if !device {
        flags |= libc::MS_NODEV;
    }
    mount(None, dst, None, flags, None)
}

/// A mount point for `src` at `dst`: a directory for a directory, an empty
/// file for anything else.
fn mount_point(src: &Path, dst: &Path) -> io::Result<()> {
    if src.is_dir() {
        fs::create_dir_all(dst)
    } else {
        fs::write(dst, b"")
    }
}

/// Runs on a thread of its own: moves that thread into a new mount
/// namespace, builds the root in `stage` and pivots into it. Returns the
/// namespace's descriptor.
fn build_root(stage: &Path, writable: &Path) -> io::Result<OwnedFd> {
    // SAFETY: affects this thread only (CLONE_FS unshares its root and
    // working directory from the process's other threads).
    if unsafe { libc::unshare(libc::CLONE_NEWNS | libc::CLONE_FS) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // Nothing mounted here propagates back to the host.
    mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )?;
    mount(
        Some(Path::new("tmpfs")),
        stage,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some("mode=0755,size=16m"),
    )?;
    let at = |p: &str| stage.join(p);
    for name in PROGRAMS {
        let host = Path::new("/").join(name);
        match fs::symlink_metadata(&host) {
            Ok(m) if m.file_type().is_symlink() => {
                std::os::unix::fs::symlink(fs::read_link(&host)?, at(name))?
            }
            Ok(m) if m.is_dir() => {
                fs::create_dir(at(name))?;
                bind(&host, &at(name), true, false)?;
            }
            _ => {}
        }
    }
    fs::create_dir(at("etc"))?;
    for name in ETC {
        let host = Path::new("/etc").join(name);
        let inside = at("etc").join(name);
        match fs::symlink_metadata(&host) {
            Ok(m) if m.file_type().is_symlink() => {
                std::os::unix::fs::symlink(fs::read_link(&host)?, &inside)?
            }
            Ok(_) => {
                mount_point(&host, &inside)?;
                bind(&host, &inside, true, false)?;
            }
            Err(_) => {}
        }
    }
    // haproxy's `chroot /var/lib/haproxy`: an empty directory of its own.
    fs::create_dir_all(at("var/lib/haproxy"))?;
    std::os::unix::fs::symlink("/run", at("var/run"))?;
    fs::create_dir(at("dev"))?;
    mount(
        Some(Path::new("tmpfs")),
        &at("dev"),
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("mode=0755,size=64k"),
    )?;
    for d in DEVICES {
        let host = Path::new("/dev").join(d);
        if host.exists() {
            fs::write(at("dev").join(d), b"")?;
            bind(&host, &at("dev").join(d), false, true)?;
        }
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(target, at("dev").join(link))?;
    }
    for (dir, mode) in [("dev/shm", "1777"), ("tmp", "1777"), ("run", "0755")] {
        fs::create_dir_all(at(dir))?;
        mount(
            Some(Path::new("tmpfs")),
            &at(dir),
            Some("tmpfs"),
            libc::MS_NOSUID | libc::MS_NODEV,
            Some(&format!("mode={mode},size=16m")),
        )?;
    }
    // proc read-only per mount (its superblock stays writable, so the
    // bind of /proc/sys/net under it can be writable).
    fs::create_dir(at("proc"))?;
    let proc_flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    mount(
        Some(Path::new("proc")),
        &at("proc"),
        Some("proc"),
        proc_flags,
        None,
    )?;
    bind(&at("proc/sys/net"), &at("proc/sys/net"), false, false)?;
    mount(
        None,
        &at("proc"),
        None,
        libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | proc_flags,
        None,
    )?;
    // The lab's directory, writable, at its own path.
    let inside = stage.join(writable.strip_prefix("/").unwrap_or(writable));
    fs::create_dir_all(&inside)?;
    bind(writable, &inside, false, false)?;
    // Into the new root; the old one is detached from this namespace.
    let old = at(".old");
    fs::create_dir(&old)?;
    let (new_c, old_c) = (cstr(stage)?, cstr(&old)?);
    // SAFETY: NUL-terminated paths; pivot_root has no libc wrapper.
    if unsafe { libc::syscall(libc::SYS_pivot_root, new_c.as_ptr(), old_c.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    std::env::set_current_dir("/")?;
    // SAFETY: a NUL-terminated path.
    if unsafe { libc::umount2(c"/.old".as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(io::Error::last_os_error());
    }
    fs::remove_dir("/.old")?;
    mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
        None,
    )?;
    Ok(fs::File::open("/proc/thread-self/ns/mnt")?.into())
}
