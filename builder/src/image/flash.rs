//! `haseed flash`: an image onto a card, safely. The target must be a
//! removable block device that nothing has mounted and that does not hold the
//! running system, unless the user forces it. The first MiB (partition table
//! and boot sector) is written last, so an interrupted write leaves a card
//! that does not look bootable; then everything is synced, the page cache
//! dropped, and the card read back and compared. Several cards are written
//! at once, each on its own thread ([`write`] per card, `cli.rs`).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::bmap::Checker;
use super::cards::Layered;
use super::progress::Progress;

const HEAD: u64 = 1 << 20;
const CHUNK: usize = 4 << 20;

/// What the target is, and why it would be refused.
#[derive(Debug)]
pub struct Target {
    pub path: PathBuf,
    pub block_device: bool,
    /// The whole disk's directory in sysfs (block devices).
    pub sys: Option<PathBuf>,
    /// The disk's size in bytes, from sysfs (block devices).
    pub size: Option<u64>,
    /// Reasons to refuse without --force, each a full sentence.
    pub refusals: Vec<String>,
}

fn major_minor(rdev: u64) -> (u64, u64) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (major, minor)
}

/// Every "major:minor" of a disk and its partitions, from sysfs.
fn disk_devices(disk_dir: &Path) -> Vec<String> {
    let mut v = Vec::new();
    if let Ok(d) = std::fs::read_to_string(disk_dir.join("dev")) {
        v.push(d.trim().to_string());
    }
    if let Ok(entries) = std::fs::read_dir(disk_dir) {
        for e in entries.flatten() {
            if e.path().join("partition").exists() {
                if let Ok(d) = std::fs::read_to_string(e.path().join("dev")) {
                    v.push(d.trim().to_string());
                }
            }
        }
    }
    v
}

/// (device "major:minor", mount point) of every mount.
fn mounts() -> Vec<(String, String)> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            Some((f.get(2)?.to_string(), f.get(4)?.to_string()))
        })
        .collect()
}

/// Looks at a flash target.
pub fn inspect(path: &Path) -> anyhow::Result<Target> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("flash target {}", path.display()))?;
    let mut refusals = Vec::new();
    if !meta.file_type().is_block_device() {
        refusals.push(format!("{} is not a block device", path.display()));
        return Ok(Target {
            path: path.into(),
            block_device: false,
            sys: None,
            size: None,
            refusals,
        });
    }
    let (maj, min) = major_minor(meta.rdev());
    let sys = std::fs::canonicalize(format!("/sys/dev/block/{maj}:{min}"))
        .with_context(|| format!("looking up {} in /sys/dev/block", path.display()))?;
    let disk_dir = if sys.join("partition").exists() {
        sys.parent().map(Path::to_path_buf).unwrap_or(sys.clone())
    } else {
        sys.clone()
    };
    let name = disk_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("?")
        .to_string();
    if sys != disk_dir {
        refusals.push(format!(
            "{} is a partition of {name}: flash the whole device (/dev/{name})",
            path.display()
        ));
    }
    let removable = std::fs::read_to_string(disk_dir.join("removable"))
        .is_ok_and(|r| r.trim() == "1")
        || name.starts_with("mmcblk")
        || disk_dir.to_string_lossy().contains("/usb");
    if !removable {
        refusals.push(format!(
            "/dev/{name} is not a removable device (not an SD card or USB reader); is it the right one?"
        ));
    }
    let devs = disk_devices(&disk_dir);
    let all = mounts();
    let mounted: Vec<&str> = all
        .iter()
        .filter(|(d, _)| devs.contains(d))
        .map(|(_, m)| m.as_str())
        .collect();
    if mounted.contains(&"/") {
        refusals.push(format!(
            "/dev/{name} holds the running system (mounted at /)"
        ));
    } else if !mounted.is_empty() {
        refusals.push(format!(
            "/dev/{name} is mounted at {}: unmount it first",
            mounted.join(", ")
        ));
    }
    // `size` counts 512-byte sectors whatever the logical block size
    // (Documentation/ABI/stable/sysfs-block).
    let size = std::fs::read_to_string(disk_dir.join("size"))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(|sectors| sectors * 512);
    Ok(Target {
        path: path.into(),
        block_device: true,
        sys: Some(disk_dir),
        size,
        refusals,
    })
}

/// What sysfs says the card is, for the ledger: (model, serial), each where
/// the kernel has it. An SD card in an MMC slot has `device/name` and
/// `device/serial` (the card's own CID fields); a card in a USB reader has
/// the reader's `device/vendor` and `device/model`, and the USB device above
/// it a `serial`; a loop device names its backing file.
pub fn identity(target: &Target) -> (Option<String>, Option<String>) {
    let Some(disk) = &target.sys else {
        return (None, None);
    };
    let read = |p: PathBuf| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    if let Some(backing) = read(disk.join("loop/backing_file")) {
        return (Some(format!("loop device over {backing}")), None);
    }
    let dev = disk.join("device");
    let model = read(dev.join("name")).or_else(|| {
        let parts: Vec<String> = [read(dev.join("vendor")), read(dev.join("model"))]
            .into_iter()
            .flatten()
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    });
    // The serial: the device's own, else the nearest one above it (the USB
    // device of a reader), never above /sys/devices.
    let mut serial = read(dev.join("serial"));
    if serial.is_none() {
        if let Ok(mut at) = std::fs::canonicalize(&dev) {
            while serial.is_none() && at.starts_with("/sys/devices/") && at.pop() {
                serial = read(at.join("serial"));
            }
        }
    }
    (model, serial)
}

/// What was written to one card: its bytes and their sha256, read back from
/// the card.
#[derive(Debug)]
pub struct Written {
    pub bytes: u64,
    pub sha256: String,
}

fn drop_cache(f: &File) {
    drop_range(f, 0, 0);
}

/// The primary GPT of a card's earlier life: its header at LBA 1 ("EFI
/// PART", UEFI 2.10 section 5.3.2) and a partition array up to LBA 33.
const GPT: (u64, u64) = (512, 33 * 512);

/// The byte ranges a card gets: the image's mapped `ranges` ((offset,
/// length), ascending, as its block map says), the MBR's sector, and, when
/// `stale_gpt` (the card holds a GPT header at LBA 1 that the image's MBR
/// would leave behind, confusing partitioning tools), sectors 1-33 too;
/// merged, cut at `len`. Nothing else: the same bytes `bmaptool copy`
/// writes, unless the card needs its old GPT cleared.
pub fn card_ranges(ranges: &[(u64, u64)], len: u64, stale_gpt: bool) -> Vec<(u64, u64)> {
    let extra = [(0, 512), GPT];
    let all: Vec<(u64, u64)> = extra[..if stale_gpt { 2 } else { 1 }]
        .iter()
        .chain(ranges)
        .map(|&(s, n)| (s.min(len), (s + n).min(len)))
        .filter(|(s, e)| e > s)
        .collect();
    super::bmap::merge(all)
        .into_iter()
        .map(|(s, e)| (s, e - s))
        .collect()
}

/// Writes `image` (of `len` bytes) to the target, the byte `ranges` it
/// maps (`card_ranges`), and reads every byte back while the card is still
/// being written, so that the card's write speed alone sets the time, as
/// with `bmaptool copy`, which reads nothing back:
/// - the body (everything past the first MiB) goes in ascending order, a
///   chunk at a time; each chunk's writeback is started at once and waited
///   for one chunk later (the card always has the next chunk queued), then
///   its cached pages are dropped and a verifier thread reads it back from
///   the card and compares it with the image;
/// - the card is synced, then the first MiB (partition table) written,
///   synced and read back: an interrupted write leaves a card that does not
///   look bootable;
/// - last, one block of every chunk is read back again from the card: a
///   counterfeit card that wraps writes past its real capacity around onto
///   earlier data passes each chunk's own read-back, not this one.
///
/// The sha256 is of the ranges in ascending order, every byte of which was
/// read back equal to the image. No byte is written before `checker` has
/// passed it (the base's block map's checksums, checked while writing): a
/// mismatch stops the card there, without its first MiB.
pub fn write(
    image: &Layered<'_>,
    len: u64,
    ranges: &[(u64, u64)],
    checker: &Checker,
    target: &Target,
    meters: &Meters<'_>,
) -> anyhow::Result<Written> {
    use sha2::Digest;
    let (progress, verify, watch) = (meters.write, meters.verify, meters.watch);
    let dev = OpenOptions::new()
        .write(true)
        .read(true)
        .open(&target.path)
        .with_context(|| format!("opening {} for writing", target.path.display()))?;
    if target.block_device {
        let size = {
            use std::io::{Seek, SeekFrom};
            let mut d = &dev;
            d.seek(SeekFrom::End(0))?
        };
        if size < len {
            bail!("{}", too_small(&target.path, size, len));
        }
    } else {
        // A plain file (forced) gets what `haseed image` writes: exactly the
        // image, owner-only, since the seed may carry password hashes and
        // keys (issue 21 item 8: it was left 0644).
        use std::os::unix::fs::PermissionsExt;
        dev.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("making {} owner-only", target.path.display()))?;
        dev.set_len(len)?;
    }

    let mut sig = [0u8; 8];
    let stale_gpt = dev.read_exact_at(&mut sig, GPT.0).is_ok() && &sig == b"EFI PART";
    let ranges = card_ranges(ranges, len, stale_gpt);
    let total: u64 = ranges.iter().map(|r| r.1).sum();
    let head = HEAD.min(len);
    let (heads, body) = pieces(&ranges, head);
    progress.set_total(total);
    verify.set_total(total);
    let unbootable = |what: &str| {
        format!(
            "{} is partly written, without its first MiB (partition table), so it does not boot; {what}",
            target.path.display()
        )
    };

    // The hash starts with the first MiB's ranges, as the image has them:
    // they are read back equal to it below, before the hash is used.
    let mut hash = sha2::Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    for &(off, n) in &heads {
        image.read_exact_at(&mut buf[..n], off)?;
        hash.update(&buf[..n]);
    }
    let (tx, rx) = std::sync::mpsc::channel::<(u64, usize)>();
    let (written, checked_back) = std::thread::scope(|scope| {
        let dev = &dev;
        let reader = scope.spawn(move || -> anyhow::Result<sha2::Sha256> {
            let (mut want, mut back) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
            for (off, n) in rx {
                watch.check()?;
                read_back(image, dev, target, off, &mut want[..n], &mut back[..n])?;
                watch.beat();
                drop_range(dev, off, n as u64);
                hash.update(&back[..n]);
                verify.advance(n as u64);
            }
            Ok(hash)
        });
        let written = (|| -> anyhow::Result<()> {
            let mut queued: Option<(u64, usize)> = None;
            for &(off, n) in &body {
                crate::interrupt::check()
                    .map_err(|e| anyhow::Error::new(e).context(unbootable("flash it again")))?;
                watch.check()?;
                checked(checker, off + n as u64, target)?;
                image.read_exact_at(&mut buf[..n], off)?;
                dev.write_all_at(&buf[..n], off)
                    .with_context(|| format!("writing {} at byte {off}", target.path.display()))?;
                writeback(dev, off, n as u64, false)
                    .with_context(|| format!("writing {} at byte {off}", target.path.display()))?;
                if let Some((q, m)) = queued.replace((off, n)) {
                    written_back(dev, target, q, m)?;
                    watch.beat();
                    if tx.send((q, m)).is_err() {
                        // The reader stopped: its error says why.
                        return Ok(());
                    }
                }
                progress.advance(n as u64);
            }
            if let Some((q, m)) = queued {
                written_back(dev, target, q, m)?;
                let _ = tx.send((q, m));
            }
            Ok(())
        })();
        drop(tx);
        let back = reader
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("a card's reader panicked")));
        (written, back)
    });
    let hash = match (written, checked_back) {
        (_, Err(e)) => return Err(e.context(unbootable("flash it again"))),
        (Err(e), _) => return Err(e),
        (Ok(()), Ok(h)) => h,
    };
    dev.sync_all().with_context(|| {
        format!(
            "syncing {}: the card did not take the data written to it",
            target.path.display()
        )
    })?;
    for &(off, n) in &heads {
        checked(checker, off + n as u64, target)?;
        image.read_exact_at(&mut buf[..n], off)?;
        dev.write_all_at(&buf[..n], off)
            .with_context(|| format!("writing {}'s first MiB", target.path.display()))?;
        progress.advance(n as u64);
    }
    dev.sync_all()
        .with_context(|| format!("syncing {}", target.path.display()))?;
    progress.finish();

    // The first MiB, and then a block of every chunk, read back from the
    // card, not from the cache.
    drop_cache(&dev);
    let mut back = vec![0u8; CHUNK];
    for &(off, n) in &heads {
        read_back(image, &dev, target, off, &mut buf[..n], &mut back[..n])?;
        verify.advance(n as u64);
    }
    watch.check()?;
    resample(image, &dev, target, &body)?;
    drop_cache(&dev);
    verify.finish();
    Ok(Written {
        bytes: total,
        sha256: hex::encode(hash.finalize()),
    })
}

/// What a card's writer reports to: its two progress lines and its
/// liveness.
pub struct Meters<'a> {
    pub write: &'a Progress,
    pub verify: &'a Progress,
    pub watch: &'a Watch,
}

/// A card writer's liveness: when it last made progress, and whether the
/// run gave up on it (`--stall-timeout`). Its writer stops at its next step
/// once given up; a write the kernel has not returned from keeps it until
/// the card answers.
pub struct Watch {
    start: std::time::Instant,
    /// Milliseconds from `start` to the last progress.
    last: std::sync::atomic::AtomicU64,
    given_up: std::sync::atomic::AtomicBool,
}

impl Default for Watch {
    fn default() -> Self {
        Watch {
            start: std::time::Instant::now(),
            last: std::sync::atomic::AtomicU64::new(0),
            given_up: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl Watch {
    /// Progress, now.
    pub fn beat(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last
            .fetch_max(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Time since the last progress.
    pub fn idle(&self) -> std::time::Duration {
        let last =
            std::time::Duration::from_millis(self.last.load(std::sync::atomic::Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }

    pub fn give_up(&self) {
        self.given_up
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn given_up(&self) -> bool {
        self.given_up.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.given_up() {
            bail!("given up: no progress for too long");
        }
        Ok(())
    }
}

/// What is read back again of every chunk once the whole card is written.
const SAMPLE: usize = 4096;

/// Reads the first block of every chunk of the body back again, once the
/// whole card is written: each chunk was read back right after it was
/// written, so a difference now means a later write landed on it.
fn resample(
    image: &Layered<'_>,
    dev: &File,
    target: &Target,
    body: &[(u64, usize)],
) -> anyhow::Result<()> {
    let (mut want, mut back) = ([0u8; SAMPLE], [0u8; SAMPLE]);
    for &(off, n) in body {
        crate::interrupt::check().map_err(|e| {
            anyhow::Error::new(e).context(format!(
                "{} is written but was not verified; flash it again to be sure",
                target.path.display()
            ))
        })?;
        let n = n.min(SAMPLE);
        read_back(image, dev, target, off, &mut want[..n], &mut back[..n]).map_err(|e| {
            e.context("after the whole card was written: the card may hold less than it says (counterfeit cards wrap writes past their real size around onto earlier data)")
        })?;
    }
    Ok(())
}

/// (offset, length) pieces of a card's ranges, at most CHUNK bytes each.
type Pieces = Vec<(u64, usize)>;

/// `ranges` in pieces of at most CHUNK bytes, in the order they are
/// written: (those in the first `head` bytes, the rest).
fn pieces(ranges: &[(u64, u64)], head: u64) -> (Pieces, Pieces) {
    let (mut heads, mut body) = (Vec::new(), Vec::new());
    for &(start, n) in ranges {
        let end = start + n;
        let mut off = start;
        while off < end {
            let stop = if off < head { end.min(head) } else { end };
            let n = (stop - off).min(CHUNK as u64) as usize;
            if off < head {
                heads.push((off, n));
            } else {
                body.push((off, n));
            }
            off += n as u64;
        }
    }
    (heads, body)
}

/// Reads `want.len()` bytes at `off` from the image and from the card and
/// fails where they differ.
fn read_back(
    image: &Layered<'_>,
    dev: &File,
    target: &Target,
    off: u64,
    want: &mut [u8],
    back: &mut [u8],
) -> anyhow::Result<()> {
    image.read_exact_at(want, off)?;
    dev.read_exact_at(back, off)
        .with_context(|| format!("reading {} back at byte {off}", target.path.display()))?;
    if want != back {
        let at = off
            + want
                .iter()
                .zip(&*back)
                .position(|(a, b)| a != b)
                .unwrap_or(0) as u64;
        bail!(
            "verification failed: {} differs from the image at byte {at}; the card may be failing",
            target.path.display()
        );
    }
    Ok(())
}

/// Starts the writeback of a range of the card's cached pages
/// (`sync_file_range(2)`), and with `wait` waits for it (and any already
/// under way) to reach the card.
fn writeback(dev: &File, off: u64, n: u64, wait: bool) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let flags = if wait {
        libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER
    } else {
        libc::SYNC_FILE_RANGE_WRITE
    };
    // SAFETY: a valid open descriptor; the call only schedules and waits for
    // writeback of the file's own pages.
    let r = unsafe { libc::sync_file_range(dev.as_raw_fd(), off as i64, n as i64, flags) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Waits for a chunk to reach the card and drops its cached pages, so that
/// reading it back reads the card.
fn written_back(dev: &File, target: &Target, off: u64, n: usize) -> anyhow::Result<()> {
    writeback(dev, off, n as u64, true)
        .with_context(|| format!("writing {} at byte {off}", target.path.display()))?;
    drop_range(dev, off, n as u64);
    Ok(())
}

fn drop_range(f: &File, off: u64, n: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid open descriptor; fadvise only drops clean cached pages.
    unsafe {
        libc::posix_fadvise(
            f.as_raw_fd(),
            off as i64,
            n as i64,
            libc::POSIX_FADV_DONTNEED,
        );
    }
}

/// Waits for the block map's check to pass `end`; its failure stops the
/// card, which has no first MiB yet.
fn checked(checker: &Checker, end: u64, target: &Target) -> anyhow::Result<()> {
    checker.wait(end).map_err(|why| {
        if let Err(e) = crate::interrupt::check() {
            return anyhow::Error::new(e);
        }
        anyhow::anyhow!(
            "the base's block map: {why}; {} was stopped before that range, without its first MiB (partition table), so it does not boot",
            target.path.display()
        )
    })
}

/// The refusal of a card smaller than the image, sizes in human units.
pub fn too_small(path: &Path, size: u64, len: u64) -> String {
    format!(
        "{} holds {} ({size} bytes) but the image is {} ({len} bytes)",
        path.display(),
        super::progress::human(size),
        super::progress::human(len)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The disk this machine runs from is refused, by what it is; `inspect`
    /// only reads sysfs and /proc, it never opens the device.
    #[test]
    fn the_running_system_disk_is_refused() {
        let root = mounts()
            .into_iter()
            .find(|(_, m)| m == "/")
            .map(|(d, _)| d)
            .expect("/ is mounted");
        let uevent = std::fs::read_to_string(format!("/sys/dev/block/{root}/uevent"))
            .expect("the root file system is on a block device here");
        let name = uevent
            .lines()
            .find_map(|l| l.strip_prefix("DEVNAME="))
            .expect("DEVNAME");
        let t = inspect(Path::new(&format!("/dev/{name}"))).expect("inspect");
        assert!(t.block_device);
        let all = t.refusals.join("; ");
        assert!(all.contains("holds the running system"), "{all}");

        let t = inspect(Path::new("/dev/null")).expect("inspect");
        assert_eq!(t.refusals, ["/dev/null is not a block device"]);
    }

    /// Ranges in write order: the first MiB's parts apart, the rest in
    /// chunks of at most CHUNK.
    #[test]
    fn ranges_are_cut_at_the_head_and_into_chunks() {
        let c = CHUNK as u64;
        let (heads, body) = pieces(&[(0, 512), (HEAD - 4096, 8192), (3 * c, c + 1)], HEAD);
        assert_eq!(heads, [(0, 512), (HEAD - 4096, 4096)]);
        assert_eq!(body, [(HEAD, 4096), (3 * c, CHUNK), (4 * c, 1)]);
    }

    fn image_of(bytes: &[u8]) -> (File, File) {
        let (head, base) = (tempfile::tempfile().unwrap(), tempfile::tempfile().unwrap());
        base.write_all_at(bytes, 0).unwrap();
        head.write_all_at(&bytes[..4096], 0).unwrap();
        (head, base)
    }

    fn plain(path: &Path) -> Target {
        Target {
            path: path.into(),
            block_device: false,
            sys: None,
            size: None,
            refusals: Vec::new(),
        }
    }

    /// A plain file as the card: every mapped byte lands and is read back,
    /// the unmapped ones stay as they were, and the sha256 is of the ranges
    /// in ascending order.
    #[test]
    fn a_card_gets_its_ranges_and_their_sha256() {
        use sha2::Digest;
        let len = 3 * CHUNK as u64 + HEAD;
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8 | 1).collect();
        let (head, base) = image_of(&bytes);
        let image = Layered::new(&head, 4096, &base);
        let dir = tempfile::tempdir().unwrap();
        let card = dir.path().join("card");
        std::fs::write(&card, vec![0u8; len as usize]).unwrap();
        let ranges = [
            (0, 8192),
            (HEAD + 4096, 2 * CHUNK as u64),
            (len - 4096, 4096),
        ];
        let quiet = Progress::new("test", true);
        let meters = Meters {
            write: &quiet,
            verify: &quiet,
            watch: &Watch::default(),
        };
        let w = write(
            &image,
            len,
            &ranges,
            &Checker::passed(),
            &plain(&card),
            &meters,
        )
        .expect("written");
        let back = std::fs::read(&card).unwrap();
        let mut hash = sha2::Sha256::new();
        let mut at = 0;
        for &(s, n) in &ranges {
            let (s, e) = (s as usize, (s + n) as usize);
            assert_eq!(back[s..e], bytes[s..e], "range at {s}");
            assert!(
                back[at..s].iter().all(|&b| b == 0),
                "unmapped bytes before {s}"
            );
            hash.update(&bytes[s..e]);
            at = e;
        }
        assert_eq!(w.bytes, ranges.iter().map(|r| r.1).sum::<u64>());
        assert_eq!(w.sha256, hex::encode(hash.finalize()));
    }

    /// A byte that differs is found, at its offset; a chunk that a later
    /// write overwrote is found by the second look.
    #[test]
    fn a_card_that_differs_or_wraps_is_caught() {
        let bytes = vec![5u8; 2 * CHUNK];
        let (head, base) = image_of(&bytes);
        let image = Layered::new(&head, 4096, &base);
        let dir = tempfile::tempdir().unwrap();
        let card = dir.path().join("card");
        std::fs::write(&card, &bytes).unwrap();
        let dev = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&card)
            .unwrap();
        let t = plain(&card);
        let body = [(0, CHUNK), (CHUNK as u64, CHUNK)];
        resample(&image, &dev, &t, &body).expect("the card holds the image");
        let (mut a, mut b) = (vec![0u8; 100], vec![0u8; 100]);
        read_back(&image, &dev, &t, 0, &mut a, &mut b).expect("equal");

        dev.write_all_at(&[6], CHUNK as u64 + 10).unwrap();
        let e = read_back(&image, &dev, &t, CHUNK as u64, &mut a, &mut b).unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("differs from the image at byte {}", CHUNK + 10)),
            "{e}"
        );
        let e = format!("{:#}", resample(&image, &dev, &t, &body).unwrap_err());
        assert!(e.contains("counterfeit"), "{e}");
    }

    #[test]
    fn device_numbers_decode_like_glibc() {
        // makedev(8, 16) and makedev(259, 1) (NVMe partitions use big majors).
        assert_eq!(super::major_minor(0x0810), (8, 16));
        assert_eq!(super::major_minor((259u64 << 8) & 0xfff00 | 1), (259, 1));
    }
}
