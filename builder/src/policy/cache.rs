//! The compile cache: native code this host compiled, kept on disk between builds.
//!
//! Loading an entry runs it as native code (`Component::deserialize`), outside
//! the sandbox and past every sha256 pin, so an entry is trusted only when this
//! user's own haseed wrote it. It must never load a file that anyone else could
//! have written or swapped:
//!
//! - The directory is opened once, walking from `/` one component at a time
//!   without following symlinks; every ancestor must belong to root or to us and
//!   be writable by nobody else (or sticky, like /tmp), and the directory itself
//!   must be ours and writable by nobody else. Entries are then opened relative
//!   to that handle, so swapping a path component afterwards changes nothing.
//! - Each entry carries an HMAC-SHA256 over the component's sha256, the engine
//!   key and the native code, with a 32-byte key from the OS's random source,
//!   kept in the directory as `key` (mode 0600, ours, checked on every open).
//!   Whoever can write the directory but cannot read the key (a CI cache shared
//!   between branches, another user) cannot make an entry we accept, nor pass
//!   one component's entry off as another's.
//!
//! What it does not protect against: someone who can read the key or run code
//! as this user already owns every build this user runs.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use sha2::{Digest, Sha256};

/// What starts every entry, before the 32-byte tag: the format's version.
const MAGIC: &[u8; 8] = b"haseedC2";
const TAG_BYTES: usize = 32;
const KEY_BYTES: usize = 32;
/// The key's file name inside the cache directory.
const KEY_FILE: &str = "key";

/// Entries larger than this are not read (the compiler's output is capped at
/// the same size, see [`super::compile::MAX_NATIVE_BYTES`]).
const MAX_ENTRY_BYTES: u64 = super::compile::MAX_NATIVE_BYTES as u64 + 64;

/// An opened, checked cache directory and its key.
pub struct CompileCache {
    /// The directory, opened once; every entry is opened relative to it.
    dir: OwnedFd,
    path: PathBuf,
    key: [u8; KEY_BYTES],
    /// Ties entries to this haseed and this engine configuration.
    engine_key: String,
}

impl CompileCache {
    /// Opens (creating if needed) the cache at `path`. `Err` says why the
    /// cache cannot be trusted; the caller then compiles without it.
    pub fn open(path: &Path, engine_key: String) -> Result<CompileCache, String> {
        let dir = open_private_dir(path)?;
        let key = load_or_create_key(&dir)?;
        Ok(CompileCache {
            dir,
            path: path.to_path_buf(),
            key,
            engine_key,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn entry_name(&self, digest: &str) -> Option<String> {
        // The digest is ours (hex of a sha256), but a name must never climb out.
        (digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| format!("{digest}-{}.cwasm", self.engine_key))
    }

    fn tag(&self, digest: &str, native: &[u8]) -> [u8; TAG_BYTES] {
        entry_tag(&self.key, digest, &self.engine_key, native)
    }

    /// The native code stored for component `digest`, only if its tag proves
    /// this cache's key made it for that component and this engine.
    pub fn get(&self, digest: &str) -> Option<Vec<u8>> {
        let name = self.entry_name(digest)?;
        let fd = rustix::fs::openat(
            &self.dir,
            name.as_str(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        let st = rustix::fs::fstat(&fd).ok()?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile
            || st.st_size as u64 > MAX_ENTRY_BYTES
        {
            return None;
        }
        let mut bytes = Vec::with_capacity(st.st_size as usize);
        File::from(fd)
            .take(MAX_ENTRY_BYTES + 1)
            .read_to_end(&mut bytes)
            .ok()?;
        let (header, native) = bytes.split_at_checked(MAGIC.len() + TAG_BYTES)?;
        let (magic, tag) = header.split_at(MAGIC.len());
        if magic != MAGIC || !constant_time_eq(&self.tag(digest, native), tag) {
            return None;
        }
        bytes.drain(..MAGIC.len() + TAG_BYTES);
        Some(bytes)
    }

    /// Stores `native` for component `digest`, replacing any entry there (a
    /// stale or forged one included). Written to a fresh file, then renamed:
    /// a reader sees the old entry or the new one, never half of one.
    pub fn put(&self, digest: &str, native: &[u8]) -> std::io::Result<()> {
        let Some(name) = self.entry_name(digest) else {
            return Ok(());
        };
        let tag = self.tag(digest, native);
        let (tmp_name, fd) = create_fresh(&self.dir, &name)?;
        let written = (|| {
            let mut file = File::from(fd);
            file.write_all(MAGIC)?;
            file.write_all(&tag)?;
            file.write_all(native)?;
            file.flush()?;
            rustix::fs::renameat(&self.dir, tmp_name.as_str(), &self.dir, name.as_str())?;
            Ok(())
        })();
        if written.is_err() {
            let _ = rustix::fs::unlinkat(&self.dir, tmp_name.as_str(), AtFlags::empty());
        }
        written
    }
}

/// The tag of an entry: HMAC-SHA256 under the cache's key over the format's
/// name, the component's sha256, the engine key and the native code (each
/// field ended by a NUL, so no two field lists hash alike).
pub fn entry_tag(key: &[u8], digest: &str, engine_key: &str, native: &[u8]) -> [u8; TAG_BYTES] {
    let mut mac = HmacSha256::new(key);
    mac.update(b"haseed compile cache v2\0");
    mac.update(digest.as_bytes());
    mac.update(b"\0");
    mac.update(engine_key.as_bytes());
    mac.update(b"\0");
    mac.update(native);
    mac.finalize()
}

/// HMAC-SHA256 as RFC 2104 defines it, over the sha2 crate the project
/// already builds. (The RustCrypto `hmac` crate would switch on digest's
/// `mac` feature, which cranelift and wasmtime are built against, and so
/// rebuild the whole wasmtime stack; the construction is a dozen lines and
/// checked against RFC 4231's vectors below.)
struct HmacSha256 {
    inner: Sha256,
    outer_key: [u8; 64],
}

impl HmacSha256 {
    fn new(key: &[u8]) -> HmacSha256 {
        let mut block = [0u8; 64];
        if key.len() > block.len() {
            block[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let mut inner = Sha256::new();
        inner.update(block.map(|b| b ^ 0x36));
        HmacSha256 {
            inner,
            outer_key: block.map(|b| b ^ 0x5c),
        }
    }

    fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
    }

    fn finalize(self) -> [u8; 32] {
        let mut outer = Sha256::new();
        outer.update(self.outer_key);
        outer.update(self.inner.finalize());
        outer.finalize().into()
    }
}

/// Compares without an early exit, so the time taken says nothing about
/// how much of a forged tag was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Creates `{stem}.tmp-{random}` in `dir` (O_EXCL, no symlink followed, 0600).
fn create_fresh(dir: &OwnedFd, stem: &str) -> std::io::Result<(String, OwnedFd)> {
    loop {
        let mut salt = [0u8; 8];
        fill_random(&mut salt)?;
        let name = format!("{stem}.tmp-{}", hex::encode(salt));
        match rustix::fs::openat(
            dir,
            name.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::RUSR | Mode::WUSR,
        ) {
            Ok(fd) => return Ok((name, fd)),
            Err(Errno::EXIST) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Random bytes from the kernel (getrandom(2), blocking until the pool is
/// initialised).
fn fill_random(buf: &mut [u8]) -> std::io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: writes at most rest.len() bytes into rest.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        filled += n as usize;
    }
    Ok(())
}

fn is_sticky(mode: u32) -> bool {
    mode & 0o1000 != 0
}

/// Walks `path` from `/` with O_NOFOLLOW, creating missing directories 0700,
/// and checks every step (see the module's comment). Returns the last one.
pub(crate) fn open_private_dir(path: &Path) -> Result<OwnedFd, String> {
    let me = rustix::process::geteuid().as_raw();
    let abs = std::path::absolute(path).map_err(|e| format!("cannot resolve the path: {e}"))?;
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut fd = rustix::fs::open("/", dir_flags, Mode::empty())
        .map_err(|e| format!("cannot open /: {e}"))?;
    let mut walked = PathBuf::from("/");
    let names: Vec<&std::ffi::OsStr> = abs
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name),
            Component::ParentDir => Some(std::ffi::OsStr::new("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    check_ancestor(&fd, &walked, me)?;
    for (i, name) in names.iter().enumerate() {
        walked.push(name);
        let next = match rustix::fs::openat(&fd, *name, dir_flags, Mode::empty()) {
            Ok(next) => next,
            Err(Errno::NOENT) => {
                match rustix::fs::mkdirat(&fd, *name, Mode::RWXU) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(format!("cannot create {}: {e}", walked.display())),
                }
                rustix::fs::openat(&fd, *name, dir_flags, Mode::empty())
                    .map_err(|e| describe_open_error(&fd, name, &walked, e))?
            }
            Err(e) => return Err(describe_open_error(&fd, name, &walked, e)),
        };
        if i + 1 < names.len() {
            check_ancestor(&next, &walked, me)?;
        } else {
            let st = rustix::fs::fstat(&next).map_err(|e| format!("{}: {e}", walked.display()))?;
            let mode = st.st_mode as u32;
            if st.st_uid != me {
                return Err(format!(
                    "{} belongs to uid {}, not to this user (uid {me}); another user could \
                     plant native code there",
                    walked.display(),
                    st.st_uid
                ));
            }
            if mode & 0o022 != 0 {
                return Err(format!(
                    "{} is writable by others (mode {:o}); run chmod go-w on it",
                    walked.display(),
                    mode & 0o7777
                ));
            }
        }
        fd = next;
    }
    Ok(fd)
}

fn describe_open_error(dir: &OwnedFd, name: &std::ffi::OsStr, walked: &Path, e: Errno) -> String {
    let is_link = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink);
    if is_link {
        format!(
            "{} is a symlink; the cache path is walked without following symlinks (whoever \
             controls a link controls what we load): give the real path instead",
            walked.display()
        )
    } else {
        format!("cannot open {}: {e}", walked.display())
    }
}

/// An ancestor must belong to root or to us, and others may not rename its
/// entries: not group/other-writable, unless sticky (then only an entry's
/// owner may rename it, and the next step is checked in turn).
fn check_ancestor(fd: &OwnedFd, path: &Path, me: u32) -> Result<(), String> {
    let st = rustix::fs::fstat(fd).map_err(|e| format!("{}: {e}", path.display()))?;
    let mode = st.st_mode as u32;
    if st.st_uid != 0 && st.st_uid != me {
        return Err(format!(
            "its ancestor {} belongs to uid {} (neither root nor this user, uid {me}), who \
             could swap the directory",
            path.display(),
            st.st_uid
        ));
    }
    if mode & 0o022 != 0 && !is_sticky(mode) {
        return Err(format!(
            "its ancestor {} is writable by others without the sticky bit (mode {:o}), so \
             another user could swap the directory",
            path.display(),
            mode & 0o7777
        ));
    }
    Ok(())
}

/// Reads the cache key, creating it on first use: random bytes from the OS,
/// written to a fresh 0600 file linked into place (so a concurrent haseed
/// never reads a half-written key).
fn load_or_create_key(dir: &OwnedFd) -> Result<[u8; KEY_BYTES], String> {
    match read_key(dir) {
        Err(KeyError::Missing) => {}
        other => return other.map_err(KeyError::into_message),
    }
    let mut key = [0u8; KEY_BYTES];
    fill_random(&mut key).map_err(|e| format!("no random bytes for the cache key: {e}"))?;
    let (tmp, fd) = create_fresh(dir, KEY_FILE).map_err(|e| format!("creating the key: {e}"))?;
    let made = File::from(fd)
        .write_all(&key)
        .map_err(|e| format!("writing the key: {e}"))
        .and_then(|()| {
            match rustix::fs::linkat(dir, tmp.as_str(), dir, KEY_FILE, AtFlags::empty()) {
                // Another haseed got there first: use its key.
                Ok(()) | Err(Errno::EXIST) => Ok(()),
                Err(e) => Err(format!("installing the key: {e}")),
            }
        });
    let _ = rustix::fs::unlinkat(dir, tmp.as_str(), AtFlags::empty());
    made?;
    read_key(dir).map_err(KeyError::into_message)
}

enum KeyError {
    Missing,
    Refused(String),
}

impl KeyError {
    fn into_message(self) -> String {
        match self {
            KeyError::Missing => "the key file vanished while it was being created".into(),
            KeyError::Refused(why) => why,
        }
    }
}

fn read_key(dir: &OwnedFd) -> Result<[u8; KEY_BYTES], KeyError> {
    let me = rustix::process::geteuid().as_raw();
    let fd = match rustix::fs::openat(
        dir,
        KEY_FILE,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Err(KeyError::Missing),
        Err(e) => {
            return Err(KeyError::Refused(format!(
                "cannot open its key file {KEY_FILE} ({e}); delete it to make a new one"
            )))
        }
    };
    let st = rustix::fs::fstat(&fd)
        .map_err(|e| KeyError::Refused(format!("cannot stat its key file: {e}")))?;
    let mode = st.st_mode as u32;
    let problem = if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        Some("is not a regular file".to_string())
    } else if st.st_uid != me {
        Some(format!(
            "belongs to uid {}, not to this user (uid {me})",
            st.st_uid
        ))
    } else if mode & 0o077 != 0 {
        Some(format!(
            "is readable or writable by others (mode {:o}; it must be 0600)",
            mode & 0o7777
        ))
    } else if st.st_size as usize != KEY_BYTES {
        Some(format!("holds {} bytes, not {KEY_BYTES}", st.st_size))
    } else {
        None
    };
    if let Some(problem) = problem {
        return Err(KeyError::Refused(format!(
            "its key file {KEY_FILE} {problem}; delete the cache directory to start afresh"
        )));
    }
    let mut key = [0u8; KEY_BYTES];
    File::from(fd)
        .read_exact(&mut key)
        .map_err(|e| KeyError::Refused(format!("cannot read its key file: {e}")))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(dir: &Path) -> CompileCache {
        CompileCache::open(dir, "engine".into()).expect("cache opens")
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        let hmac = |key: &[u8], data: &[u8]| {
            let mut mac = HmacSha256::new(key);
            mac.update(data);
            hex::encode(mac.finalize())
        };
        // Test cases 1, 2 and 6 (a key longer than the block).
        assert_eq!(
            hmac(&[0x0b; 20], b"Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hmac(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hmac(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            ),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    const DIGEST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const OTHER: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

    #[test]
    fn an_entry_reads_back_only_under_its_own_key_component_and_engine() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("c");
        let c = cache(&dir);
        c.put(DIGEST, b"native code").expect("put");
        assert_eq!(c.get(DIGEST).as_deref(), Some(&b"native code"[..]));
        // Another component's name for the same file: refused.
        std::fs::copy(
            dir.join(format!("{DIGEST}-engine.cwasm")),
            dir.join(format!("{OTHER}-engine.cwasm")),
        )
        .expect("copy");
        assert_eq!(c.get(OTHER), None);
        // Another engine: refused.
        let other_engine = CompileCache::open(&dir, "other".into()).expect("opens");
        std::fs::copy(
            dir.join(format!("{DIGEST}-engine.cwasm")),
            dir.join(format!("{DIGEST}-other.cwasm")),
        )
        .expect("copy");
        assert_eq!(other_engine.get(DIGEST), None);
        // A new key (the cache wiped and remade): the old entries are foreign.
        std::fs::remove_file(dir.join(KEY_FILE)).expect("rm key");
        assert_eq!(cache(&dir).get(DIGEST), None);
    }

    #[test]
    fn any_change_to_an_entry_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let c = cache(tmp.path());
        let native: Vec<u8> = (0..200u8).collect();
        c.put(DIGEST, &native).expect("put");
        let file = tmp.path().join(format!("{DIGEST}-engine.cwasm"));
        let good = std::fs::read(&file).expect("entry");
        // Every single-bit flip, and every truncation, fails authentication.
        for i in 0..good.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = good.clone();
                bad[i] ^= bit;
                std::fs::write(&file, &bad).expect("write");
                assert_eq!(c.get(DIGEST), None, "flip at byte {i} accepted");
            }
        }
        for len in 0..good.len() {
            std::fs::write(&file, &good[..len]).expect("write");
            assert_eq!(c.get(DIGEST), None, "truncation to {len} accepted");
        }
        std::fs::write(&file, &good).expect("write");
        assert_eq!(c.get(DIGEST), Some(native));
    }

    #[test]
    fn a_key_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        cache(tmp.path());
        let key = tmp.path().join(KEY_FILE);
        assert_eq!(
            std::fs::metadata(&key).expect("key").permissions().mode() & 0o777,
            0o600
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = CompileCache::open(tmp.path(), "engine".into())
            .err()
            .expect("refused");
        assert!(err.contains("mode 644"), "{err}");
    }

    #[test]
    fn a_symlinked_key_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("c");
        cache(&dir);
        std::fs::rename(dir.join(KEY_FILE), tmp.path().join("elsewhere")).expect("mv");
        std::os::unix::fs::symlink(tmp.path().join("elsewhere"), dir.join(KEY_FILE))
            .expect("symlink");
        let err = CompileCache::open(&dir, "engine".into())
            .err()
            .expect("refused");
        assert!(err.contains("key file"), "{err}");
    }
}
