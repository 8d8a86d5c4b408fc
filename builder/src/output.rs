//! Writes a build to disk: one directory per node plus a deterministic
//! `SITE.tar.gz` bundle, swapped into place atomically.
//!
//! Everything is staged in a hidden sibling directory first and renamed over
//! the target only when complete, so after any failure the target holds
//! either the previous build or nothing from this run. It must never delete a
//! directory it did not create: an existing non-empty target without our
//! marker file is refused.
//!
//! Builds into one directory are serialised: each holds an exclusive `flock(2)` on a lock file
//! beside the target (`.NAME.haseed-lock` in its parent) from the check of the old target to
//! the rename, so a concurrent build waits (and says so) instead of finding the directory it
//! was about to move aside gone. The lock file stays: removing it would let a third build lock
//! a new file while the second still holds the old one.
//!
//! Files that hold secrets are readable by their owner only, in the directory and in the
//! bundle: `user-data` (SSH keys, password hash, every file's content), the bundle itself, a
//! keepalived.conf with an `auth_pass`, anything holding a PEM private key, and any file the
//! plan already gave no group/other permissions (its mode is kept exactly).

use std::borrow::Cow;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use flate2::{Compression, GzBuilder};

use crate::render::NodeArtifacts;

/// Marks a directory as a haseed build output (so a later build may replace it).
pub const MARKER: &str = ".haseed-build";

/// One file of the build tree, relative to the build directory. The content is borrowed from
/// the rendered nodes where it can be (a 10,000-node build holds about 200 MB of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutFile<'a> {
    pub rel: PathBuf,
    pub mode: u32,
    pub content: Cow<'a, [u8]>,
}

/// The fixed timestamp of every bundle entry: SOURCE_DATE_EPOCH if set, else 0.
pub fn source_date_epoch() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The files of one build, in a stable order (sorted by path, component by component).
pub fn build_tree(nodes: &[(String, NodeArtifacts)]) -> Vec<OutFile<'_>> {
    let mut files = Vec::new();
    for (name, art) in nodes {
        let base = PathBuf::from(name);
        files.push(OutFile {
            rel: base.join("user-data"),
            mode: 0o600,
            content: Cow::Borrowed(art.user_data.as_bytes()),
        });
        files.push(OutFile {
            rel: base.join("meta-data"),
            mode: 0o644,
            content: Cow::Borrowed(art.meta_data.as_bytes()),
        });
        files.push(OutFile {
            rel: base.join("network-config"),
            mode: 0o644,
            content: Cow::Borrowed(art.network_config.as_bytes()),
        });
        for f in &art.files {
            let rel = f.path.trim_start_matches('/');
            files.push(OutFile {
                rel: base.join("files").join(rel),
                mode: out_mode(f.mode, &f.content),
                content: Cow::Borrowed(f.content.as_bytes()),
            });
        }
    }
    sort_by_path(&mut files);
    files
}

/// Sorts `files` as `Path`'s own order would (component by component), comparing plain bytes:
/// each path's key is its components joined by NUL, a byte no component holds, so a path
/// sorts before the paths it is a prefix of, as with components. Comparing `Path`s directly
/// walked their components on every comparison: a tenth of a 10,000-node build's samples.
fn sort_by_path(files: &mut Vec<OutFile<'_>>) {
    use std::os::unix::ffi::OsStrExt;
    files.sort_by_cached_key(|f| {
        let mut key = Vec::with_capacity(f.rel.as_os_str().len());
        for (i, c) in f.rel.components().enumerate() {
            if i > 0 {
                key.push(0);
            }
            key.extend_from_slice(c.as_os_str().as_bytes());
        }
        key
    });
}

/// The mode a node file gets in the build: the plan's, without group/other permissions when
/// the content holds a secret. Never setuid, setgid, sticky or world-writable, here and in
/// the bundle, whatever reaches this point: the plan checker refuses such modes
/// ([`crate::check::MODE_MAX`]), and this keeps them off the build host if anything skipped it.
fn out_mode(mode: u32, content: &str) -> u32 {
    let mode = mode & crate::check::MODE_MAX;
    if holds_secret(content) {
        mode & !0o077
    } else {
        mode
    }
}

/// Whether a file's content is a secret: a keepalived `auth_pass` or a PEM private key.
pub fn holds_secret(content: &str) -> bool {
    crate::render::holds_secret(content)
        || (content.contains("-----BEGIN ") && content.contains("PRIVATE KEY-----"))
}

/// The bundle's tar is compressed in pieces of this size, each its own gzip member.
const GZIP_PIECE: usize = 4 << 20;

/// zlib's own default level. Level 9 (haseed's earlier choice) took about 4 s of one core for
/// the 187 MB tar of a 10,000-node site, most of a build (issue 19); on generated configs
/// level 6 gives nearly the same size (zlib's manual: 6 is "a default compromise between
/// speed and compression").
const GZIP_LEVEL: u32 = 6;

/// A gzip-compressed tar of `files` under `SITE/`, byte-identical for equal input.
///
/// The tar is cut into fixed 4 MiB pieces, each compressed as its own gzip member on up to 8
/// threads and concatenated in order: RFC 1952 section 2.2 allows several members in one
/// file, and gzip, GNU tar, Python's tarfile and flate2's MultiGzDecoder read them as one
/// stream. The pieces do not depend on the thread count, so neither do the bytes.
pub fn bundle(site: &str, files: &[OutFile<'_>]) -> anyhow::Result<Vec<u8>> {
    let mtime = source_date_epoch();
    let size: usize = files.iter().map(|f| f.content.len() + 1024).sum();
    let mut tar = tar::Builder::new(Vec::with_capacity(size + 64 * 1024));
    tar.mode(tar::HeaderMode::Deterministic);
    let mut dirs = std::collections::BTreeSet::new();
    for f in files {
        let mut parent = f.rel.parent();
        while let Some(p) = parent {
            if p.as_os_str().is_empty() {
                break;
            }
            dirs.insert(p.to_path_buf());
            parent = p.parent();
        }
    }
    let root = PathBuf::from(site);
    let mut header = tar::Header::new_gnu();
    for d in std::iter::once(PathBuf::new()).chain(dirs) {
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        header.set_mtime(mtime);
        header.set_uid(0);
        header.set_gid(0);
        tar.append_data(&mut header, root.join(&d), std::io::empty())?;
    }
    for f in files {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(f.mode);
        header.set_size(f.content.len() as u64);
        header.set_mtime(mtime);
        header.set_uid(0);
        header.set_gid(0);
        tar.append_data(&mut header, root.join(&f.rel), &*f.content)?;
    }
    let raw = tar.into_inner()?;
    gzip_pieces(&raw, mtime as u32)
}

/// `raw` as concatenated gzip members of [`GZIP_PIECE`] bytes each (see [`bundle`]).
fn gzip_pieces(raw: &[u8], mtime: u32) -> anyhow::Result<Vec<u8>> {
    let pieces: Vec<&[u8]> = raw.chunks(GZIP_PIECE).collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8)
        .min(pieces.len().max(1));
    let compress = |piece: &[u8]| -> std::io::Result<Vec<u8>> {
        let mut gz = GzBuilder::new().mtime(mtime).write(
            Vec::with_capacity(piece.len() / 4),
            Compression::new(GZIP_LEVEL),
        );
        gz.write_all(piece)?;
        gz.finish()
    };
    let mut out: Vec<Option<Vec<u8>>> = vec![None; pieces.len()];
    std::thread::scope(|s| -> anyhow::Result<()> {
        let workers: Vec<_> = (0..threads)
            .map(|w| {
                let pieces = &pieces;
                s.spawn(move || -> std::io::Result<Vec<(usize, Vec<u8>)>> {
                    (w..pieces.len())
                        .step_by(threads)
                        .map(|i| Ok((i, compress(pieces[i])?)))
                        .collect()
                })
            })
            .collect();
        for w in workers {
            let done = w
                .join()
                .map_err(|_| anyhow::anyhow!("a compression thread panicked"))??;
            for (i, gz) in done {
                out[i] = Some(gz);
            }
        }
        Ok(())
    })?;
    if raw.is_empty() {
        return Ok(compress(raw)?);
    }
    Ok(out.into_iter().flatten().flatten().collect())
}

/// Writes the build into `dir` atomically (see the module docs).
pub fn write_build(
    dir: &Path,
    site: &str,
    nodes: &[(String, NodeArtifacts)],
) -> anyhow::Result<()> {
    write_build_with(dir, site, nodes, Vec::new())
}

/// [`write_build`] plus `extra` files of the site (e.g. `_aws/...`), in the
/// directory and the bundle.
pub fn write_build_with(
    dir: &Path,
    site: &str,
    nodes: &[(String, NodeArtifacts)],
    extra: Vec<OutFile<'static>>,
) -> anyhow::Result<()> {
    let mut files = build_tree(nodes);
    if !extra.is_empty() {
        files.extend(extra);
        sort_by_path(&mut files);
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let _lock = lock_build_dir(dir, &parent)?;
    if dir.exists() {
        let empty = fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_none();
        if !empty && !dir.join(MARKER).exists() {
            bail!(
                "{} exists and is not a haseed build directory (no {MARKER}); refusing to replace it. \
                 Choose another -o or remove it.",
                dir.display()
            );
        }
    }
    let stage = tempfile::Builder::new()
        .prefix(".haseed-stage-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a staging directory in {}", parent.display()))?;
    // The bundle is made on its own threads while the files are written on others.
    let (bundle, written) = std::thread::scope(|s| {
        let bundle = s.spawn(|| bundle(site, &files));
        let written = write_tree(stage.path(), &files);
        (bundle.join(), written)
    });
    written?;
    let bundle = bundle
        .map_err(|_| anyhow::anyhow!("the bundle thread panicked"))?
        .context("making the bundle")?;
    write_file(&stage.path().join(format!("{site}.tar.gz")), 0o600, &bundle)?;
    write_file(&stage.path().join(MARKER), 0o644, b"haseed build output\n")?;
    fs::set_permissions(stage.path(), fs::Permissions::from_mode(0o755))?;

    let staged = stage.keep();
    let swap = |staged: &Path| -> anyhow::Result<()> {
        if dir.exists() {
            let old = tempfile::Builder::new()
                .prefix(".haseed-old-")
                .tempdir_in(&parent)?
                .keep();
            // rename(2) needs the target gone: move the old build aside first.
            fs::remove_dir(&old)?;
            fs::rename(dir, &old)
                .with_context(|| format!("moving the previous {} aside", dir.display()))?;
            if let Err(e) = fs::rename(staged, dir) {
                let _ = fs::rename(&old, dir);
                return Err(e).with_context(|| format!("renaming into {}", dir.display()));
            }
            fs::remove_dir_all(&old).ok();
        } else {
            fs::rename(staged, dir).with_context(|| format!("renaming into {}", dir.display()))?;
        }
        Ok(())
    };
    if let Err(e) = swap(&staged) {
        fs::remove_dir_all(&staged).ok();
        return Err(e);
    }
    Ok(())
}

/// An exclusive lock on a build directory, released when dropped (closing the file).
struct BuildLock {
    _file: fs::File,
}

/// Takes the build lock of `dir` (see the module docs), waiting for another build that holds it.
fn lock_build_dir(dir: &Path, parent: &Path) -> anyhow::Result<BuildLock> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let path = parent.join(format!(".{name}.haseed-lock"));
    // O_NOFOLLOW: in a shared directory another user may have planted a symlink there.
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .with_context(|| format!("opening the build lock {}", path.display()))?;
    let lock = |how: libc::c_int| loop {
        // SAFETY: flock on a file descriptor we own, no pointers involved.
        if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), how) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    match lock(libc::LOCK_EX | libc::LOCK_NB) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            eprintln!(
                "{}",
                crate::term::safe(&format!(
                    "waiting for another haseed build into {} to finish (lock {})",
                    dir.display(),
                    path.display()
                ))
            );
            lock(libc::LOCK_EX).with_context(|| format!("locking {}", path.display()))?;
        }
        Err(e) => return Err(e).with_context(|| format!("locking {}", path.display())),
    }
    Ok(BuildLock { _file: file })
}

/// Writes one file through a temporary sibling renamed into place (no
/// half-written file is ever left under `path`).
pub fn write_file_atomic(path: &Path, mode: u32, content: &[u8]) -> anyhow::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".haseed-")
        .tempfile_in(&parent)
        .with_context(|| format!("creating a temporary file in {}", parent.display()))?;
    tmp.write_all(content)?;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(mode))?;
    tmp.persist(path)?;
    Ok(())
}

/// Writes `files` under `root` on up to 8 threads, each taking whole top-level directories
/// (a node's tree): it creates that tree's directories, each once and parents first, then
/// its files. A 10,000-node build makes about 150,000 directories and 120,000 files; with
/// the directories made on one thread first, `mkdir` alone was 39 % of a build's samples
/// (`perf record`, 2 cores, journaled ext4).
fn write_tree(root: &Path, files: &[OutFile<'_>]) -> anyhow::Result<()> {
    // `files` is sorted, so each top-level directory's files are one run.
    let mut groups: Vec<&[OutFile<'_>]> = Vec::new();
    let mut start = 0;
    for i in 1..=files.len() {
        if i == files.len() || top(&files[i].rel) != top(&files[start].rel) {
            if i > start {
                groups.push(&files[start..i]);
            }
            start = i;
        }
    }
    let umask = current_umask();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8)
        .min(groups.len().max(1));
    let per = files.len().div_ceil(threads).max(1);
    // Consecutive groups into parts of about `per` files each.
    let mut parts: Vec<&[&[OutFile<'_>]]> = Vec::new();
    let (mut from, mut count) = (0, 0);
    for (i, g) in groups.iter().enumerate() {
        count += g.len();
        if count >= per || i + 1 == groups.len() {
            parts.push(&groups[from..=i]);
            from = i + 1;
            count = 0;
        }
    }
    std::thread::scope(|s| {
        let writers: Vec<_> = parts
            .into_iter()
            .map(|part| {
                s.spawn(move || -> anyhow::Result<()> {
                    let mut made: std::collections::HashSet<&Path> =
                        std::collections::HashSet::new();
                    for group in part {
                        made.clear();
                        for f in *group {
                            make_parents(root, &f.rel, &mut made)?;
                            create_file(&root.join(&f.rel), f.mode, umask, &f.content)?;
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for w in writers {
            w.join()
                .map_err(|_| anyhow::anyhow!("a writer thread panicked"))??;
        }
        Ok(())
    })
}

/// The first component of a relative path (its node, or `_aws`, or a top-level file).
fn top(rel: &Path) -> &std::ffi::OsStr {
    rel.components()
        .next()
        .map_or(std::ffi::OsStr::new(""), |c| c.as_os_str())
}

/// Creates the missing parent directories of `rel` under `root`, parents first, one `mkdir`
/// each: `made` holds the directories of this tree already made (a parent's entry means
/// all its own parents exist).
fn make_parents<'a>(
    root: &Path,
    rel: &'a Path,
    made: &mut std::collections::HashSet<&'a Path>,
) -> anyhow::Result<()> {
    let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    if made.contains(parent) {
        return Ok(());
    }
    make_parents(root, parent, made)?;
    let path = root.join(parent);
    match fs::create_dir(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(e).with_context(|| format!("creating {}", path.display()));
        }
        _ => {}
    }
    made.insert(parent);
    Ok(())
}

/// The process's umask, from /proc/self/status (Linux 4.7 on; reading it
/// with umask(2) would change it for a moment under the bundle's thread).
/// Unknown: 0o777, so every file's mode is set explicitly.
fn current_umask() -> u32 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o777)
}

/// A new file with exactly `mode` (whatever the umask) in an existing directory.
fn create_file(path: &Path, mode: u32, umask: u32, content: &[u8]) -> anyhow::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(content)
        .with_context(|| format!("writing {}", path.display()))?;
    // The umask may have cut the mode; set it exactly (fchmod: no second path
    // lookup), only then (24,000 fchmod of 21 us each for 2,000 nodes).
    if mode & umask != 0 {
        f.set_permissions(fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

fn write_file(path: &Path, mode: u32, content: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(content)
        .with_context(|| format!("writing {}", path.display()))?;
    // The umask may have cut the mode; set it exactly.
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::render::RenderedFile;

    fn file(path: &str, mode: u32, content: &str) -> RenderedFile {
        RenderedFile {
            path: path.into(),
            mode,
            owner: "root:root".into(),
            content: content.into(),
        }
    }

    fn artifacts() -> NodeArtifacts {
        NodeArtifacts {
            user_data: "#cloud-config\nusers: []\n".into(),
            meta_data: "instance-id: x\n".into(),
            network_config: "network:\n  version: 2\n".into(),
            files: vec![
                file("/etc/default/plain", 0o644, "A=1\n"),
                file(
                    "/etc/keepalived/keepalived.conf",
                    0o644,
                    "vrrp_instance VI_1 {\n    authentication {\n        auth_type PASS\n        auth_pass s3cret\n    }\n}\n",
                ),
                file(
                    "/etc/ssl/private/lb.pem",
                    0o640,
                    "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
                ),
                file("/etc/haseed/token", 0o600, "t0ken\n"),
                file("/usr/local/bin/tool", 0o755, "#!/bin/sh\n"),
            ],
        }
    }

    /// (path relative to the build or bundle root, mode) of every secret and every control.
    const WANT: [(&str, u32); 8] = [
        ("lb1/user-data", 0o600),
        ("lb1/meta-data", 0o644),
        ("lb1/network-config", 0o644),
        ("lb1/files/etc/default/plain", 0o644),
        ("lb1/files/etc/keepalived/keepalived.conf", 0o600),
        ("lb1/files/etc/ssl/private/lb.pem", 0o600),
        ("lb1/files/etc/haseed/token", 0o600),
        ("lb1/files/usr/local/bin/tool", 0o755),
    ];

    #[test]
    fn secrets_are_owner_only_on_disk_and_in_the_bundle() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let nodes = vec![("lb1".to_string(), artifacts())];
        write_build(&out, "site", &nodes).unwrap();
        for (rel, mode) in WANT {
            let m = fs::metadata(out.join(rel)).unwrap().permissions().mode() & 0o7777;
            assert_eq!(m, mode, "{rel} on disk: {m:o}");
        }
        let bundle = out.join("site.tar.gz");
        assert_eq!(
            fs::metadata(&bundle).unwrap().permissions().mode() & 0o777,
            0o600
        );

        let mut tar = tar::Archive::new(flate2::read::MultiGzDecoder::new(
            fs::File::open(&bundle).unwrap(),
        ));
        let mut seen = Vec::new();
        for e in tar.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let mode = e.header().mode().unwrap();
            let mut body = Vec::new();
            e.read_to_end(&mut body).unwrap();
            seen.push((path, mode));
        }
        for (rel, mode) in WANT {
            let path = format!("site/{rel}");
            let got = seen.iter().find(|(p, _)| *p == path).map(|(_, m)| *m);
            assert_eq!(got, Some(mode), "{path} in the bundle: {seen:?}");
        }
    }

    /// A bundle past one gzip piece is several members: the real gzip, GNU tar and Python's
    /// tarfile read it whole, and it is byte-identical run after run.
    #[test]
    fn a_bundle_of_several_gzip_members_reads_as_one() {
        // 10 MiB of varied text: three pieces.
        let mut big = String::new();
        let mut x: u64 = 1;
        while big.len() < 10 << 20 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            big.push_str(&format!(
                "server s{} 10.0.{}.{}:6443 check\n",
                x >> 40,
                (x >> 8) & 255,
                x & 255
            ));
        }
        let files = vec![
            OutFile {
                rel: "lb1/files/big.cfg".into(),
                mode: 0o644,
                content: big.clone().into_bytes().into(),
            },
            OutFile {
                rel: "lb1/user-data".into(),
                mode: 0o600,
                content: b"#cloud-config\n".to_vec().into(),
            },
        ];
        let a = bundle("site", &files).unwrap();
        assert_eq!(a, bundle("site", &files).unwrap(), "not deterministic");
        // Three gzip members (magic 1f 8b 08 at each start).
        let members = a.windows(3).filter(|w| w == &[0x1f, 0x8b, 0x08]).count();
        assert!(members >= 3, "{members} gzip headers");

        let dir = tempfile::tempdir().unwrap();
        let tgz = dir.path().join("site.tar.gz");
        fs::write(&tgz, &a).unwrap();
        let ok = std::process::Command::new("gzip")
            .args(["-t"])
            .arg(&tgz)
            .status()
            .expect("gzip runs");
        assert!(ok.success(), "gzip -t refused the bundle");
        let ok = std::process::Command::new("tar")
            .args(["-xzf"])
            .arg(&tgz)
            .arg("-C")
            .arg(dir.path())
            .status()
            .expect("tar runs");
        assert!(ok.success(), "GNU tar refused the bundle");
        assert_eq!(
            fs::read_to_string(dir.path().join("site/lb1/files/big.cfg")).unwrap(),
            big
        );
        let py = std::process::Command::new("python3")
            .args([
                "-c",
                "import sys, tarfile; t = tarfile.open(sys.argv[1]); print(len(t.extractfile('site/lb1/files/big.cfg').read()))",
            ])
            .arg(&tgz)
            .output()
            .expect("python3 runs");
        assert!(
            py.status.success(),
            "{}",
            String::from_utf8_lossy(&py.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&py.stdout).trim(),
            big.len().to_string()
        );
    }

    #[test]
    fn the_byte_key_sorts_as_paths_do() {
        // '-' and '.' sort below 'b' but above the separator: "a/b" before "a-b" by
        // components, and a path before everything under it.
        let names = [
            "a",
            "a/b",
            "a-b",
            "a.b",
            "a/b/c",
            "a/b-c",
            "a/bc",
            "ab",
            "a/b/c/d",
            "b",
            "a0",
            "a//x",
            "a/./y",
            "_aws/api/iam-policy.json",
            "lb1/files/etc/x",
            "lb1/user-data",
            "lb10/meta-data",
        ];
        let mut files: Vec<OutFile<'_>> = names
            .iter()
            .map(|n| OutFile {
                rel: PathBuf::from(n),
                mode: 0o644,
                content: Cow::Borrowed(b""),
            })
            .collect();
        let mut by_path: Vec<PathBuf> = files.iter().map(|f| f.rel.clone()).collect();
        by_path.sort();
        sort_by_path(&mut files);
        let got: Vec<PathBuf> = files.into_iter().map(|f| f.rel).collect();
        assert_eq!(got, by_path);
    }

    #[test]
    fn the_tree_is_written_whole_by_threads_taking_whole_nodes() {
        // More top-level directories than threads, a top-level file, and deep trees: every
        // file lands with its content and mode, every directory made once.
        let mut files = Vec::new();
        for n in 0..37 {
            for (path, body) in [
                ("user-data", "u"),
                ("files/etc/a/b/c/one", "1"),
                ("files/etc/a/b/two", "2"),
                ("files/usr/x", "x"),
            ] {
                files.push(OutFile {
                    rel: PathBuf::from(format!("node{n}/{path}")),
                    mode: 0o640,
                    content: Cow::Owned(format!("{n}{body}").into_bytes()),
                });
            }
        }
        files.push(OutFile {
            rel: PathBuf::from("top-level"),
            mode: 0o600,
            content: Cow::Borrowed(b"t"),
        });
        sort_by_path(&mut files);
        let tmp = tempfile::tempdir().expect("tempdir");
        write_tree(tmp.path(), &files).expect("write_tree");
        for f in &files {
            let path = tmp.path().join(&f.rel);
            assert_eq!(std::fs::read(&path).expect("read"), &*f.content, "{path:?}");
            let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o7777;
            assert_eq!(mode, f.mode, "{path:?}");
        }
        // Nothing but these: 37 nodes x (1 + 3 files + 6 dirs below the node) + 1.
        let count = walk(tmp.path());
        assert_eq!(count, 37 * (1 + 4 + 6) + 1);
    }

    fn walk(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| {
                let e = e.expect("entry");
                1 + if e.file_type().expect("type").is_dir() {
                    walk(&e.path())
                } else {
                    0
                }
            })
            .sum()
    }

    #[test]
    fn secret_detection() {
        assert!(holds_secret("  auth_pass x\n"));
        assert!(holds_secret(
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n-----END OPENSSH PRIVATE KEY-----\n"
        ));
        // Mentioning the words is not holding a secret.
        assert!(!holds_secret(
            "# set auth_pass in the site\nauth_type PASS\n"
        ));
        assert!(!holds_secret("-----BEGIN CERTIFICATE-----\nMIIB\n"));
        assert_eq!(out_mode(0o755, "auth_pass x\n"), 0o700);
        assert_eq!(out_mode(0o4755, "a"), 0o755);
        assert_eq!(out_mode(0o7777, "a"), 0o775);
        assert_eq!(out_mode(0o646, "a"), 0o644);
        assert_eq!(out_mode(0o100644, "a"), 0o644);
    }

    /// Concurrent builds into one directory: each takes the lock in turn, none fails moving
    /// the other's output aside, and the directory ends complete.
    #[test]
    fn concurrent_builds_into_one_directory_serialise() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        for round in 0..8 {
            std::thread::scope(|s| {
                let workers: Vec<_> = (0..8)
                    .map(|_| {
                        s.spawn(|| {
                            let nodes = vec![("lb1".to_string(), artifacts())];
                            write_build(&out, "site", &nodes)
                        })
                    })
                    .collect();
                for w in workers {
                    let r = w.join().unwrap();
                    assert!(r.is_ok(), "round {round}: {:#}", r.unwrap_err());
                }
            });
            for (rel, _) in WANT {
                assert!(out.join(rel).is_file(), "round {round}: {rel} missing");
            }
            assert!(out.join("site.tar.gz").is_file());
            assert!(out.join(MARKER).is_file());
            // Nothing staged or moved aside is left behind; only the lock file stays.
            let left: Vec<String> = fs::read_dir(tmp.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n != "out" && n != ".out.haseed-lock")
                .collect();
            assert!(left.is_empty(), "round {round}: {left:?}");
        }
    }
}
