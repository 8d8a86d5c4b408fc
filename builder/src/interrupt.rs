//! Ctrl-C, `kill` and a closed terminal, turned into an error the long-running
//! commands (`lab`, `image`, `flash`) unwind with, so that their guards run:
//! the lab tears down its namespaces, the image writers remove their
//! temporary outputs. It must never do more in the handler than store the
//! signal number (async-signal-safe: signal-safety(7)).

use std::sync::atomic::{AtomicI32, Ordering};

static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    SIGNAL.store(sig, Ordering::SeqCst);
}

/// The error a command unwinds with after a signal.
#[derive(Debug, thiserror::Error)]
#[error("interrupted by {}", name(self.0))]
pub struct Interrupted(pub i32);

impl Interrupted {
    /// The shell's convention: 128 + the signal number (130 for SIGINT,
    /// 143 for SIGTERM, 129 for SIGHUP).
    pub fn exit_code(&self) -> u8 {
        (128 + self.0).clamp(0, 255) as u8
    }
}

fn name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

/// Catches SIGINT, SIGTERM and SIGHUP from now on. With SA_RESTART (what
/// `signal(2)` gives on glibc, which the lab relied on): system calls go on,
/// the loops notice at their next [`check`]. A signal the parent left
/// ignored stays ignored (POSIX's convention, which `nohup` and a shell's
/// background jobs rely on: `nohup haseed image ...` must outlive the
/// terminal).
pub fn install() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: zeroed sigactions are valid; sigaction with a null new
        // action only reads the current one; the handler only stores into an
        // atomic.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(sig, std::ptr::null(), &mut old);
            if old.sa_sigaction == libc::SIG_IGN {
                continue;
            }
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = libc::SA_RESTART;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// The signal received since [`install`], if any.
pub fn received() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Fails with [`Interrupted`] once a signal came: call it in every loop that
/// may run for long.
pub fn check() -> Result<(), Interrupted> {
    match received() {
        Some(s) => Err(Interrupted(s)),
        None => Ok(()),
    }
}
