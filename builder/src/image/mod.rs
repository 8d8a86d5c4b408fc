//! Flashable images: a base image (raw, xz or gzip) in, one image per node
//! out, where only the FAT boot partition's files differ from the base.
//!
//! The base is decompressed once, as a stream, into every node's output at
//! the same time (a writer thread per output, direct I/O where the filesystem
//! allows it; all-zero blocks become holes), then each output's boot
//! partition is edited in place with a FAT library: the seed files (or the
//! first-boot script) and cmdline.txt. Outputs are temporary files next to
//! their destination until every node has succeeded; then each is renamed
//! into place. After an error nothing is left behind.

pub mod base;
pub mod bmap;
pub mod bootcfg;
pub mod cards;
pub mod cli;
pub mod disk;
mod ext4map;
pub mod fatcheck;
#[doc(hidden)]
pub mod fatfuzz;
pub mod firstrun;
pub mod flash;
mod flash_cmd;
pub mod progress;
pub mod seed;
pub mod source;

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::contract::{NodePlan, Site};
use crate::render::NodeArtifacts;
use base::{BaseImage, SeedKind};
use progress::Progress;

/// One node's image to make.
pub struct Job<'a> {
    pub node: &'a str,
    /// The description the node's platform asks for.
    pub base: &'a BaseImage,
    pub site: &'a Site,
    pub node_index: u32,
    pub plan: &'a NodePlan,
    pub artifacts: &'a NodeArtifacts,
    pub ssh_authorized_keys: &'a [String],
    pub output: PathBuf,
}

/// What was made.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Made {
    pub node: String,
    pub output: PathBuf,
    pub base: String,
    pub seed: &'static str,
    /// The base's release, when its description lists releases.
    pub release: Option<String>,
    pub instance_id: String,
    pub cmdline: String,
    pub image_bytes: u64,
    /// The block map written beside the image (`bmap.rs`).
    pub bmap: PathBuf,
    /// Bytes its ranges cover: what `bmaptool copy` writes.
    pub mapped_bytes: u64,
    /// Where its ranges came from: the base's block map, the base's file
    /// systems, or every block (and why).
    pub bmap_from: String,
    /// The bytes of it haseed wrote: (offset, length), ascending.
    #[serde(skip)]
    pub changed: Vec<(u64, u64)>,
    /// The byte ranges the block map covers: (offset, length), ascending.
    #[serde(skip)]
    pub ranges: Vec<(u64, u64)>,
}

/// Output compression, chosen by the output's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputCompression {
    None,
    Xz,
    Gzip,
}

impl OutputCompression {
    pub fn from_path(p: &Path) -> OutputCompression {
        match p.extension().and_then(|e| e.to_str()) {
            Some("xz") => OutputCompression::Xz,
            Some("gz") => OutputCompression::Gzip,
            _ => OutputCompression::None,
        }
    }
}

/// The seed's instance id, as written in meta-data.
pub fn instance_id(a: &NodeArtifacts) -> &str {
    a.meta_data
        .lines()
        .find_map(|l| l.strip_prefix("instance-id: "))
        .unwrap_or("")
}

/// Renames the plan's packages the way the base image calls them.
pub fn apply_package_names(plan: &mut NodePlan, base: &BaseImage) {
    for p in &mut plan.packages {
        if let Some(n) = base.package_names.get(p.as_str()) {
            *p = n.clone();
        }
    }
}

/// The description for a node's platform, or why there is none.
pub fn base_for<'b>(
    all: &'b [BaseImage],
    node: &str,
    platform: &str,
) -> anyhow::Result<&'b BaseImage> {
    all.iter().find(|b| b.platform == platform).ok_or_else(|| {
        anyhow::anyhow!(
            "node {node} has platform {platform}, which has no flashable base image ({}): {}",
            all.iter()
                .map(|b| format!("{} for {}", b.name, b.platform))
                .collect::<Vec<_>>()
                .join(", "),
            match platform {
                "aws" => "use `haseed build` (or `haseed user-data`) for EC2 user-data",
                _ => "use `haseed seed` for a NoCloud disk a VM reads",
            }
        )
    })
}

/// Makes every job's image from one pass over the base.
pub fn make(
    base_path: &Path,
    base_bmap: Option<&Path>,
    jobs: &[Job<'_>],
    all: &[BaseImage],
    quiet: bool,
) -> anyhow::Result<Vec<Made>> {
    anyhow::ensure!(!jobs.is_empty(), "no node to make an image for");
    for job in jobs {
        refuse_overwriting_base(base_path, &job.output)?;
    }
    let mut dirs = CreatedDirs::default();
    let made = make_in(base_path, base_bmap, jobs, all, quiet, &mut dirs);
    if made.is_err() {
        // The temporary outputs are gone with `make_in`'s frame: the
        // directories it created for them go too.
        dirs.remove();
    }
    made
}

/// Directories a command created for its outputs, the outermost first, so
/// that a failure leaves none behind (issue 21 item 8).
#[derive(Default)]
pub struct CreatedDirs(Vec<PathBuf>);

impl CreatedDirs {
    /// `create_dir_all`, remembering each directory it made.
    pub fn create(&mut self, dir: &Path) -> anyhow::Result<()> {
        let mut missing = Vec::new();
        let mut d = Some(dir);
        while let Some(p) = d.filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
            missing.push(p.to_path_buf());
            d = p.parent();
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        missing.reverse();
        for m in missing {
            if !self.0.contains(&m) {
                self.0.push(m);
            }
        }
        Ok(())
    }

    /// Removes them, innermost first; one that is not empty (something else
    /// wrote there meanwhile) stays.
    pub fn remove(&mut self) {
        for d in self.0.drain(..).rev() {
            let _ = std::fs::remove_dir(&d);
        }
    }
}

fn make_in(
    base_path: &Path,
    base_bmap: Option<&Path>,
    jobs: &[Job<'_>],
    all: &[BaseImage],
    quiet: bool,
    dirs: &mut CreatedDirs,
) -> anyhow::Result<Vec<Made>> {
    let mut raws = Vec::with_capacity(jobs.len());
    for job in jobs {
        let dir = parent_dir(&job.output);
        dirs.create(dir)?;
        let tmp = tempfile::Builder::new()
            .prefix(".haseed-")
            .suffix(".img.part")
            .tempfile_in(dir)
            .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
        raws.push(tmp);
    }

    // The base's block map, checked before the long work.
    let base_map = bmap::for_base(base_path, base_bmap)?;
    let progress = Progress::new("decompress", quiet);
    let mut src = source::open(base_path, progress.clone())?;
    let mut outputs: Vec<Output<'_>> = raws
        .iter()
        .map(|t| Output {
            file: t.as_file(),
            direct: open_direct(t.path()),
        })
        .collect();
    let len = fan_out(&mut src.reader, &mut outputs).with_context(|| {
        format!(
            "reading base image {} ({})",
            base_path.display(),
            src.format.name()
        )
    })?;
    progress.finish();
    if let (Some((map, path)), Some(raw)) = (&base_map, raws.first()) {
        bmap::verify(map, raw.as_file(), len).with_context(|| {
            format!(
                "block map {} of base image {}",
                path.display(),
                base_path.display()
            )
        })?;
    }

    let mut made = Vec::with_capacity(jobs.len());
    let mut maps = Vec::with_capacity(jobs.len());
    for (job, raw) in jobs.iter().zip(&raws) {
        let mut m = seed_image(raw.as_file(), len, job, all).with_context(|| {
            format!(
                "node {}: base image {} ({})",
                job.node,
                base_path.display(),
                job.base.description
            )
        })?;
        // The image's block map: the base's ranges, or what the base's own
        // file systems use, and the edited boot partition.
        let (block_size, mapped) = match &base_map {
            Some((b, path)) => {
                m.bmap_from = format!("the base's block map {}", path.display());
                (b.block_size, Some(b.byte_ranges()))
            }
            None => {
                let (from, ranges) = computed_map(raw.as_file(), len);
                m.bmap_from = from;
                (bmap::DEFAULT_BLOCK, ranges)
            }
        };
        let map = bmap::for_image(raw.as_file(), len, block_size, mapped.as_deref(), edits(&m))?;
        m.mapped_bytes = map.mapped_bytes();
        m.ranges = map
            .ranges
            .iter()
            .map(|r| map.byte_range(r.first, r.last))
            .collect();
        let tmp = tempfile::Builder::new()
            .prefix(".haseed-")
            .suffix(".bmap.part")
            .tempfile_in(parent_dir(&job.output))?;
        std::fs::write(tmp.path(), bmap::render(&map))
            .with_context(|| format!("writing the block map for {}", job.output.display()))?;
        maps.push(tmp);
        made.push(m);
        crate::interrupt::check()?;
    }

    // Every node succeeded: compress where asked, then move into place.
    let mut finals = Vec::with_capacity(jobs.len());
    for (job, raw) in jobs.iter().zip(raws) {
        let out = match OutputCompression::from_path(&job.output) {
            OutputCompression::None => raw,
            c => {
                let packed = tempfile::Builder::new()
                    .prefix(".haseed-")
                    .suffix(".part")
                    .tempfile_in(parent_dir(&job.output))?;
                compress(raw.as_file(), len, packed.as_file(), c, quiet)
                    .with_context(|| format!("compressing {}", job.output.display()))?;
                packed
            }
        };
        out.as_file().sync_all()?;
        finals.push((out, &job.output));
    }
    // The last moment to stop with nothing in place.
    crate::interrupt::check()?;
    for (tmp, m) in maps.into_iter().zip(&made) {
        tmp.persist(&m.bmap)
            .map_err(|e| e.error)
            .with_context(|| format!("moving the block map into place at {}", m.bmap.display()))?;
    }
    for (tmp, dest) in finals {
        let mut perms = tmp.as_file().metadata()?.permissions();
        // The seed may carry password hashes and keys: owner only.
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
        tmp.as_file().set_permissions(perms)?;
        tmp.persist(dest)
            .map_err(|e| e.error)
            .with_context(|| format!("moving the image into place at {}", dest.display()))?;
    }
    Ok(made)
}

/// An output that is the base itself (the same file by device and inode:
/// the same name, another spelling of it, a symlink or a hard link) would
/// replace the base once the image is moved into place.
fn refuse_overwriting_base(base: &Path, output: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let (Ok(b), Ok(o)) = (std::fs::metadata(base), std::fs::metadata(output)) else {
        return Ok(());
    };
    if (b.dev(), b.ino()) == (o.dev(), o.ino()) {
        bail!(
            "the output {} is the base image {} (the same file): writing it would replace the base; choose another output path",
            output.display(),
            base.display()
        );
    }
    Ok(())
}

fn parent_dir(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

const CHUNK: usize = 1 << 20;

/// The unit read from the decompressor and handed to the writers: several
/// holes' worth, so a run of data goes to the disk in one large write (the
/// kernel splits it into requests that are in flight together; measured on
/// the benchmark, 8-16 MiB writes beat 4 MiB ones by 10-15%).
const BLOCK: usize = 8 << 20;
/// Blocks queued per output. The slowest writer holds back the reader, so at
/// most about QUEUE + 2 blocks are alive at once, whatever the node count.
const QUEUE: usize = 4;
/// O_DIRECT wants the buffer, the offset and the length aligned to the
/// device's logical block size; 4 KiB covers every disk in use.
const ALIGN: usize = 4096;

/// One block of the stream, shared read-only by every writer.
struct Block {
    buf: Vec<u8>,
    /// Where the aligned BLOCK bytes start in `buf`.
    start: usize,
    offset: u64,
    len: usize,
    /// The runs of non-zero CHUNKs, as (start, length) within the block.
    runs: Vec<(usize, usize)>,
}

impl Block {
    fn new() -> Block {
        let buf = vec![0u8; BLOCK + ALIGN];
        let start = buf.as_ptr().align_offset(ALIGN);
        Block {
            buf,
            start,
            offset: 0,
            len: 0,
            runs: Vec::new(),
        }
    }

    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }
}

fn all_zero(chunk: &[u8]) -> bool {
    // OR-folding a page at a time vectorises; an early-exit byte loop does not.
    chunk
        .chunks(4096)
        .all(|page| page.iter().fold(0u8, |a, &b| a | b) == 0)
}

/// One output: the file (buffered) and, where the filesystem allows it, the
/// same file opened with O_DIRECT for the aligned writes.
pub struct Output<'f> {
    pub file: &'f File,
    pub direct: Option<File>,
}

/// Opens `path` a second time for direct I/O, or None where the filesystem
/// refuses it (tmpfs, some network filesystems).
pub fn open_direct(path: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .ok()
}

/// Copies the stream into every output at once; all-zero chunks are skipped
/// (holes read back as zeros). Returns the stream's length.
///
/// This thread decompresses; each output has a writer thread fed through a
/// bounded queue of shared blocks, so the outputs are written in parallel
/// while decompression goes on, and memory stays bounded. Aligned writes go
/// through O_DIRECT: no copy into the page cache (the CPU is busy
/// decompressing), many large requests in flight for the disk, and no
/// gigabytes of dirty pages for the final sync to wait on.
pub fn fan_out(reader: &mut dyn Read, outputs: &mut [Output<'_>]) -> anyhow::Result<u64> {
    let off = std::thread::scope(|scope| {
        let mut queues = Vec::with_capacity(outputs.len());
        let mut writers = Vec::with_capacity(outputs.len());
        for out in outputs.iter_mut() {
            let (tx, rx) = std::sync::mpsc::sync_channel::<std::sync::Arc<Block>>(QUEUE);
            queues.push(tx);
            writers.push(scope.spawn(move || -> anyhow::Result<()> {
                for block in rx {
                    crate::interrupt::check()?;
                    write_block(out, &block)?;
                }
                Ok(())
            }));
        }

        let read = read_blocks(reader, &queues);
        drop(queues);
        // A writer's error explains a failed send; report it first.
        let mut first_err = None;
        for w in writers {
            let r = w
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("an image writer panicked")));
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        read
    })?;
    for out in outputs.iter() {
        out.file.set_len(off)?;
    }
    Ok(off)
}

/// The reader's side of [`fan_out`]: fills blocks and sends each to every
/// writer, recycling the blocks every writer has finished with.
fn read_blocks(
    reader: &mut dyn Read,
    queues: &[std::sync::mpsc::SyncSender<std::sync::Arc<Block>>],
) -> anyhow::Result<u64> {
    use std::sync::Arc;
    let mut pool: Vec<Arc<Block>> = Vec::new();
    let mut off = 0u64;
    loop {
        crate::interrupt::check()?;
        let mut block = match pool.iter().position(|b| Arc::strong_count(b) == 1) {
            Some(i) => pool.swap_remove(i),
            None => Arc::new(Block::new()),
        };
        let b = Arc::get_mut(&mut block).expect("a recycled block has no other owner");
        let start = b.start;
        let n = source::read_full(reader, &mut b.buf[start..start + BLOCK])?;
        if n == 0 {
            break;
        }
        b.offset = off;
        b.len = n;
        b.runs.clear();
        let mut at = 0;
        while at < n {
            let end = (at + CHUNK).min(n);
            if !all_zero(&b.buf[start + at..start + end]) {
                match b.runs.last_mut() {
                    Some((s, l)) if *s + *l == at => *l += end - at,
                    _ => b.runs.push((at, end - at)),
                }
            }
            at = end;
        }
        off += n as u64;
        if !b.runs.is_empty() {
            for q in queues {
                if q.send(Arc::clone(&block)).is_err() {
                    bail!("an image writer stopped");
                }
            }
        }
        pool.push(block);
        if n < BLOCK {
            break;
        }
    }
    // A trailing stream after a short read would be a decoder bug; make sure.
    let mut probe = [0u8; 1];
    if reader.read(&mut probe)? != 0 {
        bail!("the decompressor returned a short block before the end of the stream");
    }
    Ok(off)
}

/// Writes a block's data runs: the aligned part through O_DIRECT where
/// possible, an unaligned tail (the last block of an odd-sized image)
/// through the page cache.
fn write_block(out: &mut Output<'_>, block: &Block) -> anyhow::Result<()> {
    let data = block.data();
    for &(s, l) in &block.runs {
        let at = block.offset + s as u64;
        let run = &data[s..s + l];
        let aligned = if at.is_multiple_of(ALIGN as u64) {
            l / ALIGN * ALIGN
        } else {
            0
        };
        let mut done = 0;
        if aligned > 0 {
            if let Some(d) = &out.direct {
                match d.write_all_at(&run[..aligned], at) {
                    Ok(()) => done = aligned,
                    // The filesystem took the open but not the write (a larger
                    // logical block size, say): stay with the page cache.
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => out.direct = None,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        out.file.write_all_at(&run[done..], at + done as u64)?;
    }
    Ok(())
}

/// What a base without a block map needs on a card, from its partition
/// table and file systems: everything outside the partitions (the MBR and
/// the gap before the first), each ext4 partition's used blocks
/// (`ext4map`), each FAT partition's (its FAT: `fatcheck`), every other
/// partition whole; a file system that cannot be read is mapped whole,
/// saying why. Says where the
/// map came from; `None` (every block) when even the table cannot be read.
fn computed_map(raw: &File, len: u64) -> (String, Option<Vec<(u64, u64)>>) {
    let parts = match disk::partitions(raw, len) {
        Ok(p) if !p.is_empty() => p,
        Ok(_) => {
            return (
                "every block (the base has no block map and no partitions)".into(),
                None,
            )
        }
        Err(e) => {
            return (
                format!("every block (the base has no block map, and its partition table: {e:#})"),
                None,
            )
        }
    };
    // Whatever lies outside the partitions (the MBR and the gap before the
    // first one, anything after the last) is mapped as it is.
    let mut extents: Vec<(u64, u64)> = parts
        .iter()
        .map(|p| (p.start, (p.start + p.len).min(len)))
        .collect();
    extents.sort_unstable();
    let mut ranges = Vec::new();
    let mut at = 0;
    for &(s, e) in &extents {
        if s > at {
            ranges.push((at, s - at));
        }
        at = at.max(e);
    }
    if at < len {
        ranges.push((at, len - at));
    }
    let mut said = Vec::new();
    for p in &parts {
        let whole = (p.start, p.len.min(len - p.start));
        if disk::FAT_TYPES.contains(&p.kind) {
            // The FAT's own allocation: what lies before the data area and
            // the clusters in use.
            match disk::check_fat(raw, p) {
                Ok(fat) => {
                    said.push(format!("partition {}'s FAT", p.number));
                    ranges.extend(fat.used.iter().map(|&(s, e)| (p.start + s, e - s)));
                }
                Err(e) => {
                    said.push(format!("partition {} whole ({e:#})", p.number));
                    ranges.push(whole);
                }
            }
            continue;
        }
        if p.kind != 0x83 {
            ranges.push(whole);
            continue;
        }
        match ext4map::used_ranges(raw, p.start, p.len.min(len - p.start)) {
            Ok(used) => {
                said.push(format!("partition {}'s ext4 block bitmaps", p.number));
                ranges.extend(used);
            }
            Err(e) => {
                said.push(format!("partition {} whole ({e:#})", p.number));
                ranges.push(whole);
            }
        }
    }
    let from = if said.is_empty() {
        "its partitions whole (the base has no block map)".to_string()
    } else {
        format!("the base's file systems: {}", said.join(", "))
    };
    (from, Some(ranges))
}

/// What the image's block map adds for haseed's edits: the bytes haseed
/// wrote, on top of the base's blocks (its own block map, or what its file
/// systems use: `computed_map`), as `bmaptool copy` would write the base's
/// blocks and nothing else. The boot partition's free clusters stay
/// whatever the card held, which FAT never reads.
fn edits(m: &Made) -> &[(u64, u64)] {
    &m.changed
}

/// Checks the image against the node's base description and writes the seed.
fn seed_image(raw: &File, len: u64, job: &Job<'_>, all: &[BaseImage]) -> anyhow::Result<Made> {
    let desc = job.base;
    let part = disk::fat_partition(raw, len, desc.boot_partition)?;
    let checked = disk::check_fat(raw, &part)?;
    let log = disk::WriteLog::default();
    let fs = disk::open_fat_logged(raw, &part, &log)?;
    let looks = Looks::read(&fs, all);
    let matched = identify(&looks, all);
    let release = match matched.iter().find(|m| m.base.name == desc.name) {
        Some(m) => m.release.map(|r| r.name.clone()),
        None => {
            let what = match matched.first() {
                None => format!(
                    "its boot partition matches no supported base image ({}); it has {}",
                    all.iter()
                        .map(|b| b.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    looks.describe()
                ),
                Some(m) => format!(
                    "its boot partition looks like {}{} (platform {}): it has {}",
                    m.base.description,
                    m.release
                        .map(|r| format!(", release {}", r.name))
                        .unwrap_or_default(),
                    m.base.platform,
                    looks.describe()
                ),
            };
            bail!(
                "node {} has platform {}, which needs {}, but {what}; pick the base image that matches the node's platform, or change the node's platform",
                job.node,
                desc.platform,
                desc.description
            );
        }
    };
    for f in &desc.boot_files {
        if !disk::exists(&fs, f) {
            bail!(
                "its boot partition has no {f}: not a {} boot partition",
                desc.description
            );
        }
    }

    let id = instance_id(job.artifacts).to_string();
    let mut words = desc.cmdline_words(&id);
    words.extend(job.plan.kernel_cmdline.iter().cloned());
    // Every file the firmware may read the command line from gets the
    // words; the first is the one a board without conditional sections reads.
    let mut edited: Vec<(String, String)> = Vec::new();
    for c in disk::cmdlines(&fs)? {
        let Some(bytes) = disk::read_capped(&fs, &c.path, fatcheck::CMDLINE_MAX) else {
            bail!(
                "{} but its boot partition has no {}: the firmware reads the kernel command line from there",
                c.why(),
                c.path
            );
        };
        if bytes.len() as u64 > fatcheck::CMDLINE_MAX {
            bail!(
                "{} on the boot partition is longer than a kernel command line ({} bytes)",
                c.path,
                fatcheck::CMDLINE_MAX
            );
        }
        let old = String::from_utf8(bytes)
            .with_context(|| format!("{} on the boot partition is not UTF-8 text", c.path))?;
        edited.push((c.path, old));
    }
    let old = edited[0].1.clone();
    let edited: Vec<(String, String)> = edited
        .into_iter()
        .map(|(path, old)| {
            let new = disk::edit_cmdline(&old, &words);
            (path, new)
        })
        .collect();
    let cmdline = edited[0].1.clone();

    let a = job.artifacts;
    let script;
    let mut files: Vec<(&str, &[u8])> = match desc.seed {
        SeedKind::Nocloud => vec![
            ("user-data", a.user_data.as_bytes()),
            ("meta-data", a.meta_data.as_bytes()),
            ("network-config", a.network_config.as_bytes()),
        ],
        SeedKind::Firstrun => {
            script = firstrun::script(job, desc, &old)?;
            vec![(
                desc.firstrun_file().unwrap_or("firstrun.sh"),
                script.as_bytes(),
            )]
        }
    };
    for (path, text) in &edited {
        files.push((path.as_str(), text.as_bytes()));
    }
    let (need, have) = disk::room(&checked, &files);
    if need > have {
        bail!(
            "its boot partition has {} free but the seed needs {}: free space on the boot partition or use a larger base",
            progress::human(have),
            progress::human(need)
        );
    }
    for (name, bytes) in &files {
        disk::write(&fs, name, bytes)?;
    }
    fs.unmount().context("finishing the boot partition")?;
    let changed = bmap::merge(log.into_inner())
        .into_iter()
        .map(|(s, e)| (s, e - s))
        .collect();
    Ok(Made {
        node: job.node.to_string(),
        output: job.output.clone(),
        base: desc.name.clone(),
        seed: match desc.seed {
            SeedKind::Nocloud => "nocloud",
            SeedKind::Firstrun => "firstrun",
        },
        release,
        instance_id: id,
        cmdline: cmdline.trim_end().to_string(),
        image_bytes: len,
        bmap: bmap::path_for_output(&job.output),
        mapped_bytes: len,
        bmap_from: String::new(),
        changed,
        ranges: Vec::new(),
    })
}

/// What a boot partition shows of its release: what identification goes
/// by, and what a refusal names.
struct Looks {
    label: String,
    /// The files any description names (boot files, placeholders) and
    /// issue.txt, those that are there.
    files: Vec<String>,
    cmdline: Vec<String>,
    /// The `os_prefix` config.txt puts before the boot assets ("" if none).
    prefix: String,
    /// The words of cmdline.txt any release is told by.
    marks: Vec<String>,
    /// issue.txt's first line: pi-gen's "PI_GEN_RELEASE IMG_DATE".
    issue_release: Option<String>,
    /// The pi-gen commit issue.txt's second line names.
    issue_commit: Option<String>,
}

/// pi-gen's release note on the boot partition (export-image/05-finalise
/// copies /etc/rpi-issue there; scripts/common `update_issue` writes it).
const ISSUE: &str = "issue.txt";
/// The most of issue.txt read (pi-gen's is two short lines).
const ISSUE_MAX: u64 = 4096;

impl Looks {
    fn read(fs: &disk::Fat<'_>, all: &[BaseImage]) -> Looks {
        let mut names: Vec<&str> = vec![ISSUE];
        for b in all {
            names.extend(b.boot_files.iter().map(String::as_str));
            names.extend(b.placeholders.iter().map(String::as_str));
            for r in &b.releases {
                names.extend(r.placeholders.iter().map(String::as_str));
            }
        }
        names.sort_unstable();
        names.dedup();
        let files: Vec<String> = names
            .into_iter()
            .filter(|f| disk::exists(fs, f))
            .map(str::to_string)
            .collect();
        // The command line a board without conditional sections reads; a
        // base without one is refused later, naming it.
        let (primary, prefix) = disk::cmdlines(fs)
            .ok()
            .and_then(|c| c.into_iter().next())
            .map_or_else(
                || ("cmdline.txt".to_string(), String::new()),
                |c| (c.path, c.prefix),
            );
        let cmdline: Vec<String> = disk::read_capped(fs, &primary, fatcheck::CMDLINE_MAX)
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .split_whitespace()
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let marks = all
            .iter()
            .flat_map(|b| &b.releases)
            .flat_map(|r| &r.cmdline_words)
            .filter(|w| cmdline.contains(w))
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let issue = read_head(fs, ISSUE, ISSUE_MAX).unwrap_or_default();
        let mut lines = issue.lines().map(str::trim);
        let issue_release = lines.next().filter(|l| !l.is_empty()).map(str::to_string);
        let issue_commit = lines.next().and_then(|l| {
            l.split(',')
                .map(str::trim)
                .find(|w| w.len() == 40 && w.bytes().all(|b| b.is_ascii_hexdigit()))
                .map(str::to_ascii_lowercase)
        });
        Looks {
            label: disk::label(fs),
            files,
            cmdline,
            prefix,
            marks,
            issue_release,
            issue_commit,
        }
    }

    /// "label "bootfs", files ..., cmdline.txt with ..., issue.txt ...".
    fn describe(&self) -> String {
        let mut d = format!("label {:?}", self.label);
        if self.files.is_empty() {
            d.push_str(", none of the files a Raspberry Pi boot partition has");
        } else {
            d.push_str(&format!(", files {}", self.files.join(", ")));
        }
        if !self.prefix.is_empty() {
            d.push_str(&format!(", config.txt os_prefix={}", self.prefix));
        }
        if !self.cmdline.is_empty() {
            if self.marks.is_empty() {
                d.push_str(", a cmdline.txt with no release's marks (neither `resize` nor `init=...firstboot`)");
            } else {
                d.push_str(&format!(", cmdline.txt with {}", self.marks.join(" ")));
            }
        }
        match (&self.issue_release, &self.issue_commit) {
            (Some(r), Some(c)) => d.push_str(&format!(", issue.txt {r:?} (pi-gen {c})")),
            (Some(r), None) => d.push_str(&format!(", issue.txt {r:?}")),
            _ => {}
        }
        d
    }
}

/// The first `max` bytes of a file on the boot partition, as text.
fn read_head(fs: &disk::Fat<'_>, name: &str, max: u64) -> Option<String> {
    let f = fs.root_dir().open_file(name).ok()?;
    let mut v = Vec::new();
    f.take(max).read_to_end(&mut v).ok()?;
    Some(String::from_utf8_lossy(&v).into_owned())
}

/// A description a boot partition matches, and which of its releases.
struct Match<'b> {
    base: &'b BaseImage,
    release: Option<&'b base::Release>,
}

/// The descriptions a boot partition matches. A pi-gen commit in issue.txt
/// that a release lists decides alone (the image says what it is). Otherwise
/// by the label and how the release looks: its placeholders, exactly (none
/// means neither user-data nor meta-data), and its cmdline.txt words; a
/// description without releases by its placeholders alone.
fn identify<'b>(looks: &Looks, all: &'b [BaseImage]) -> Vec<Match<'b>> {
    let has = |f: &str| looks.files.iter().any(|x| x == f);
    let by_label = || {
        all.iter().filter(|b| {
            b.boot_labels
                .iter()
                .any(|l| l.eq_ignore_ascii_case(&looks.label))
        })
    };
    if let Some(commit) = &looks.issue_commit {
        let known: Vec<Match<'b>> = by_label()
            .flat_map(|b| {
                b.releases
                    .iter()
                    .filter(|r| {
                        r.pi_gen_commits
                            .iter()
                            .any(|c| c.eq_ignore_ascii_case(commit))
                    })
                    .map(move |r| Match {
                        base: b,
                        release: Some(r),
                    })
            })
            .collect();
        if !known.is_empty() {
            return known;
        }
    }
    let placeholders_match = |p: &[String]| {
        if p.is_empty() {
            !has("user-data") && !has("meta-data")
        } else {
            p.iter().all(|f| has(f))
        }
    };
    by_label()
        .filter_map(|b| {
            if b.releases.is_empty() {
                return placeholders_match(&b.placeholders).then_some(Match {
                    base: b,
                    release: None,
                });
            }
            b.releases
                .iter()
                .find(|r| {
                    placeholders_match(&r.placeholders)
                        && r.os_prefix.as_deref().unwrap_or("") == looks.prefix
                        && r.cmdline_words.iter().all(|w| looks.cmdline.contains(w))
                })
                .map(|r| Match {
                    base: b,
                    release: Some(r),
                })
        })
        .collect()
}

fn compress(
    raw: &File,
    len: u64,
    out: &File,
    how: OutputCompression,
    quiet: bool,
) -> anyhow::Result<()> {
    let progress = Progress::new("compress", quiet);
    progress.set_total(len);
    let mut reader = std::io::BufReader::with_capacity(CHUNK, raw.try_clone()?);
    let writer = std::io::BufWriter::with_capacity(CHUNK, out.try_clone()?);
    match how {
        OutputCompression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(writer, flate2::Compression::new(6));
            pump(&mut reader, &mut e, &progress)?;
            e.finish()?.flush()?;
        }
        OutputCompression::Xz => {
            // Fixed block size: the output does not depend on the thread count.
            let stream = liblzma::stream::MtStreamBuilder::new()
                .preset(3)
                .block_size(32 << 20)
                .threads(std::thread::available_parallelism().map_or(1, |n| n.get().min(4)) as u32)
                .check(liblzma::stream::Check::Crc64)
                .encoder()
                .context("starting the xz encoder")?;
            let mut e = liblzma::write::XzEncoder::new_stream(writer, stream);
            pump(&mut reader, &mut e, &progress)?;
            e.finish()?.flush()?;
        }
        OutputCompression::None => unreachable!("only called to compress"),
    }
    progress.finish();
    Ok(())
}

fn pump(reader: &mut dyn Read, sink: &mut dyn Write, progress: &Progress) -> anyhow::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        crate::interrupt::check()?;
        let n = source::read_full(reader, &mut buf)?;
        if n == 0 {
            return Ok(());
        }
        sink.write_all(&buf[..n])?;
        progress.advance(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream with data, whole-chunk zeros, zeros inside data chunks and
    /// an unaligned tail, fanned out to three files (direct and buffered).
    #[test]
    fn fan_out_writes_every_byte_to_every_output() {
        let mut data = Vec::new();
        for i in 0..(3 * BLOCK + 5 * CHUNK) {
            // Zero chunks 1, 4-6 and the first block boundary's neighbours.
            let chunk = i / CHUNK;
            let zero = matches!(chunk, 1 | 4..=6) || chunk == BLOCK / CHUNK;
            data.push(if zero || i % 4099 == 0 {
                0
            } else {
                (i % 251) as u8 + 1
            });
        }
        data.extend_from_slice(b"odd tail");
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<tempfile::NamedTempFile> = (0..3)
            .map(|_| tempfile::NamedTempFile::new_in(dir.path()).unwrap())
            .collect();
        let mut outs: Vec<Output<'_>> = files
            .iter()
            .enumerate()
            .map(|(i, f)| Output {
                file: f.as_file(),
                direct: if i == 0 { None } else { open_direct(f.path()) },
            })
            .collect();
        let direct = outs[1].direct.is_some();
        let len = fan_out(&mut &data[..], &mut outs).unwrap();
        assert_eq!(len, data.len() as u64);
        // Where the filesystem takes O_DIRECT, the aligned writes used it.
        assert_eq!(outs[1].direct.is_some(), direct);
        for f in &files {
            assert!(std::fs::read(f.path()).unwrap() == data);
        }
    }

    #[test]
    fn zero_detection() {
        let mut c = vec![0u8; CHUNK];
        assert!(all_zero(&c));
        c[CHUNK - 1] = 1;
        assert!(!all_zero(&c));
        assert!(all_zero(&[]));
    }
}
