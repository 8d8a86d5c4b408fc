//! What `haseed flash` writes from, without a whole image per card (issue
//! 23): the base itself (decompressed once into a scratch file when it is
//! compressed; read in place when it is raw) and, per node, a sparse copy of
//! the image's head, everything up to the end of the boot partition, which
//! carries the node's edits ([`super::seed_image`] edits nothing else). A
//! card reads its head below `head_end` and the shared base above it
//! ([`Layered`]). Against a scratch image per node this saves writing and
//! re-reading the whole base once per card before any card is written, and
//! the block map's checksums per node (flash reads its cards back instead);
//! the base's own block map is checked while the cards are written
//! ([`super::bmap::Checker`]).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use tempfile::NamedTempFile;

use super::base::BaseImage;
use super::bmap::{self, Bmap};
use super::progress::Progress;
use super::{disk, fan_out, open_direct, seed_image, source, Job, Made, Output};

/// The decompressed base: the base file, or a scratch copy of it.
enum Base {
    Raw(File),
    Scratch(NamedTempFile),
}

impl Base {
    fn file(&self) -> &File {
        match self {
            Base::Raw(f) => f,
            Base::Scratch(t) => t.as_file(),
        }
    }
}

/// Everything `flash` writes from.
pub struct Cards {
    base: Base,
    pub len: u64,
    /// Per job: the head's scratch file and where the head ends.
    heads: Vec<(NamedTempFile, u64)>,
    pub made: Vec<Made>,
    /// The base's block map and where it was read from, to check while
    /// writing.
    pub base_map: Option<(Bmap, PathBuf)>,
}

impl Cards {
    /// Job `i`'s image, as a card reads it.
    pub fn image(&self, i: usize) -> Layered<'_> {
        let (head, end) = &self.heads[i];
        Layered {
            head: head.as_file(),
            end: *end,
            base: self.base.file(),
        }
    }

    /// The decompressed base, for the block map's checker.
    pub fn base(&self) -> &File {
        self.base.file()
    }
}

/// One node's image: its head below `end`, the shared base from there on.
pub struct Layered<'a> {
    head: &'a File,
    end: u64,
    base: &'a File,
}

impl<'a> Layered<'a> {
    /// `head` below `end`, `base` from there on.
    pub fn new(head: &'a File, end: u64, base: &'a File) -> Layered<'a> {
        Layered { head, end, base }
    }

    pub fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        let split = self.end.saturating_sub(off).min(buf.len() as u64) as usize;
        let (low, high) = buf.split_at_mut(split);
        if !low.is_empty() {
            self.head.read_exact_at(low, off)?;
        }
        if !high.is_empty() {
            self.base.read_exact_at(high, off + split as u64)?;
        }
        Ok(())
    }
}

/// Bytes copied at a time into a head; all-zero ones are left as holes.
const COPY: usize = 1 << 20;

/// Prepares every job's card from one decompression of the base, with the
/// same checks and edits as [`super::make`], in `scratch`.
pub fn prepare(
    base_path: &Path,
    base_bmap: Option<&Path>,
    jobs: &[Job<'_>],
    all: &[BaseImage],
    quiet: bool,
    scratch: &Path,
) -> anyhow::Result<Cards> {
    let base_map = bmap::for_base(base_path, base_bmap)?;
    let raw = File::open(base_path)
        .with_context(|| format!("opening base image {}", base_path.display()))?;
    let mut magic = [0u8; 8];
    let n = raw.read_at(&mut magic, 0)?;
    let base = match source::sniff(&magic[..n]) {
        Ok(source::Format::Raw) => Base::Raw(raw),
        _ => {
            drop(raw);
            let tmp = tempfile::Builder::new()
                .prefix(".haseed-base-")
                .suffix(".img")
                .tempfile_in(scratch)
                .with_context(|| format!("creating a scratch file in {}", scratch.display()))?;
            let progress = Progress::new("decompress", quiet);
            let mut src = source::open(base_path, progress.clone())?;
            let mut out = [Output {
                file: tmp.as_file(),
                direct: open_direct(tmp.path()),
            }];
            fan_out(&mut src.reader, &mut out).with_context(|| {
                format!(
                    "reading base image {} ({})",
                    base_path.display(),
                    src.format.name()
                )
            })?;
            progress.finish();
            Base::Scratch(tmp)
        }
    };
    let len = base.file().metadata()?.len();
    if let Some((map, path)) = &base_map {
        // The sizes now; the checksums while the cards are written.
        anyhow::ensure!(
            map.image_size == len,
            "block map {} of base image {}: it describes an image of {} bytes, the base is {len} bytes: not this base's block map",
            path.display(),
            base_path.display(),
            map.image_size
        );
    }
    let (block_size, mapped, from) = match &base_map {
        Some((b, path)) => (
            b.block_size,
            Some(b.byte_ranges()),
            format!("the base's block map {}", path.display()),
        ),
        None => {
            let (from, ranges) = super::computed_map(base.file(), len);
            (bmap::DEFAULT_BLOCK, ranges, from)
        }
    };
    let mut heads = Vec::with_capacity(jobs.len());
    let mut made = Vec::with_capacity(jobs.len());
    for job in jobs {
        let context = || {
            format!(
                "node {}: base image {} ({})",
                job.node,
                base_path.display(),
                job.base.description
            )
        };
        let part =
            disk::fat_partition(base.file(), len, job.base.boot_partition).with_context(context)?;
        let end = (part.start + part.len).min(len);
        let head = tempfile::Builder::new()
            .prefix(&format!(".haseed-{}-", job.node))
            .suffix(".head")
            .tempfile_in(scratch)
            .with_context(|| format!("creating a scratch file in {}", scratch.display()))?;
        copy_head(base.file(), head.as_file(), end, len).with_context(|| {
            format!("copying the first {end} bytes of the base for {}", job.node)
        })?;
        let mut m = seed_image(head.as_file(), len, job, all).with_context(context)?;
        let spans = bmap::block_spans(len, block_size, mapped.as_deref(), super::edits(&m));
        let map = Bmap {
            image_size: len,
            block_size,
            ranges: Vec::new(),
        };
        m.ranges = spans
            .iter()
            .map(|&(first, last)| map.byte_range(first, last))
            .collect();
        m.mapped_bytes = m.ranges.iter().map(|r| r.1).sum();
        m.bmap_from.clone_from(&from);
        heads.push((head, end));
        made.push(m);
        crate::interrupt::check()?;
    }
    Ok(Cards {
        base,
        len,
        heads,
        made,
        base_map,
    })
}

/// Copies `base`'s first `end` bytes into `head`, leaving all-zero
/// stretches as holes, and gives `head` the image's length. Only the base's
/// data is read: its holes (`lseek(2)` SEEK_DATA / SEEK_HOLE, where the file
/// system tells them) read as zeros anyway, and a boot partition is mostly
/// free space (Raspberry Pi OS's: 512 MiB).
fn copy_head(base: &File, head: &File, end: u64, len: u64) -> anyhow::Result<()> {
    let mut buf = vec![0u8; COPY];
    for (start, stop) in data_spans(base, end)? {
        let mut off = start;
        while off < stop {
            crate::interrupt::check()?;
            let n = (stop - off).min(COPY as u64) as usize;
            base.read_exact_at(&mut buf[..n], off)?;
            if !super::all_zero(&buf[..n]) {
                head.write_all_at(&buf[..n], off)?;
            }
            off += n as u64;
        }
    }
    head.set_len(len)?;
    Ok(())
}

/// The spans (start, end) of `f`'s first `end` bytes that may hold data:
/// what SEEK_DATA and SEEK_HOLE find, or everything where the file system
/// does not say.
fn data_spans(f: &File, end: u64) -> anyhow::Result<Vec<(u64, u64)>> {
    use std::os::fd::AsRawFd;
    let seek = |off: u64, whence: libc::c_int| -> std::io::Result<u64> {
        // SAFETY: a valid open descriptor; lseek moves only its offset,
        // which nothing else here uses (all reads are positioned).
        let r = unsafe { libc::lseek(f.as_raw_fd(), off as libc::off_t, whence) };
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(r as u64)
        }
    };
    let mut spans = Vec::new();
    let mut off = 0;
    while off < end {
        let start = match seek(off, libc::SEEK_DATA) {
            Ok(s) => s,
            // No data from here on.
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => break,
            // The file system cannot tell: read it all.
            Err(_) => return Ok(vec![(off, end)]),
        };
        if start >= end {
            break;
        }
        let stop = seek(start, libc::SEEK_HOLE)
            .context("finding the end of the base's data")?
            .min(end);
        spans.push((start, stop));
        off = stop;
    }
    Ok(spans)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only the base's data is copied, and the head reads like the base
    /// up to its end, zeros beyond.
    #[test]
    fn the_head_copies_the_bases_data_and_leaves_its_holes() {
        let base = tempfile::tempfile().unwrap();
        let mb = 1u64 << 20;
        base.write_all_at(&[7; 4096], 0).unwrap();
        base.write_all_at(&[9; 4096], 5 * mb).unwrap();
        base.write_all_at(&[3; 4096], 9 * mb).unwrap();
        base.set_len(10 * mb).unwrap();
        let spans = data_spans(&base, 8 * mb).unwrap();
        // Where the file system keeps holes (ext4, xfs, tmpfs), only the two
        // written stretches below 8 MiB are data.
        assert!(
            spans.iter().all(|&(a, b)| a < b && b <= 8 * mb),
            "{spans:?}"
        );
        let covered: u64 = spans.iter().map(|(a, b)| b - a).sum();
        assert!(covered < 8 * mb, "no hole found: {spans:?}");
        let head = tempfile::tempfile().unwrap();
        copy_head(&base, &head, 8 * mb, 10 * mb).unwrap();
        assert_eq!(head.metadata().unwrap().len(), 10 * mb);
        let (mut a, mut b) = (vec![0u8; (10 * mb) as usize], vec![0u8; (8 * mb) as usize]);
        head.read_exact_at(&mut a, 0).unwrap();
        base.read_exact_at(&mut b, 0).unwrap();
        assert_eq!(&a[..(8 * mb) as usize], &b[..]);
        assert!(a[(8 * mb) as usize..].iter().all(|&x| x == 0));
    }

    /// A read across the head's end takes each side from its own file.
    #[test]
    fn a_layered_read_splits_at_the_heads_end() {
        let head = tempfile::tempfile().unwrap();
        let base = tempfile::tempfile().unwrap();
        head.write_all_at(&[1; 8], 0).unwrap();
        base.write_all_at(&[2; 16], 0).unwrap();
        let l = Layered {
            head: &head,
            end: 8,
            base: &base,
        };
        let mut buf = [0u8; 12];
        l.read_exact_at(&mut buf, 2).unwrap();
        assert_eq!(buf, [1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2]);
        let mut buf = [0u8; 4];
        l.read_exact_at(&mut buf, 9).unwrap();
        assert_eq!(buf, [2; 4]);
        l.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(buf, [1; 4]);
    }
}
