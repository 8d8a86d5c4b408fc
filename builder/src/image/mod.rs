//! Flashable images: a base image (raw, xz or gzip) in, one image per node
//! out, where only the FAT boot partition's files differ from the base.
//!
//! The base is decompressed once, as a stream, into every node's output at
//! the same time (all-zero blocks become holes), then each output's boot
//! partition is edited in place with a FAT library: the seed files (or the
//! first-boot script) and cmdline.txt. Outputs are temporary files next to
//! their destination until every node has succeeded; then each is renamed
//! into place. After an error nothing is left behind.

pub mod base;
pub mod cli;
pub mod disk;
pub mod firstrun;
pub mod flash;
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
    pub instance_id: String,
    pub cmdline: String,
    pub image_bytes: u64,
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
    jobs: &[Job<'_>],
    all: &[BaseImage],
    quiet: bool,
) -> anyhow::Result<Vec<Made>> {
    anyhow::ensure!(!jobs.is_empty(), "no node to make an image for");
    let mut raws = Vec::with_capacity(jobs.len());
    for job in jobs {
        let dir = parent_dir(&job.output);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = tempfile::Builder::new()
            .prefix(".haseed-")
            .suffix(".img.part")
            .tempfile_in(dir)
            .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
        raws.push(tmp);
    }

    let progress = Progress::new("decompress", quiet);
    let mut src = source::open(base_path, progress.clone())?;
    let files: Vec<&File> = raws.iter().map(|t| t.as_file()).collect();
    let len = fan_out(&mut src.reader, &files).with_context(|| {
        format!(
            "reading base image {} ({})",
            base_path.display(),
            src.format.name()
        )
    })?;
    progress.finish();

    let mut made = Vec::with_capacity(jobs.len());
    for (job, raw) in jobs.iter().zip(&raws) {
        let m = seed_image(raw.as_file(), len, job, all).with_context(|| {
            format!(
                "node {}: base image {} ({})",
                job.node,
                base_path.display(),
                job.base.description
            )
        })?;
        made.push(m);
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
    for (tmp, dest) in finals {
        let mut perms = tmp.as_file().metadata()?.permissions();
        // The seed may carry password hashes and keys: owner only.
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
        tmp.as_file().set_permissions(perms)?;
        tmp.persist(dest)
            .with_context(|| format!("moving the image into place at {}", dest.display()))?;
    }
    Ok(made)
}

fn parent_dir(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

const CHUNK: usize = 1 << 20;

/// Copies the stream into every file at once; all-zero chunks are skipped
/// (holes read back as zeros). Returns the stream's length.
pub fn fan_out(reader: &mut dyn Read, files: &[&File]) -> anyhow::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut off = 0u64;
    loop {
        let n = source::read_full(reader, &mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        if chunk.iter().any(|&b| b != 0) {
            for f in files {
                f.write_all_at(chunk, off)?;
            }
        }
        off += n as u64;
        if n < CHUNK {
            break;
        }
    }
    // A trailing stream after a short read would be a decoder bug; make sure.
    let mut probe = [0u8; 1];
    if reader.read(&mut probe)? != 0 {
        bail!("the decompressor returned a short block before the end of the stream");
    }
    for f in files {
        f.set_len(off)?;
    }
    Ok(off)
}

/// Checks the image against the node's base description and writes the seed.
fn seed_image(raw: &File, len: u64, job: &Job<'_>, all: &[BaseImage]) -> anyhow::Result<Made> {
    let desc = job.base;
    let part = disk::fat_partition(raw, len, desc.boot_partition)?;
    let fs = disk::open_fat(raw, &part)?;
    let label = disk::label(&fs);
    let looks_like = identify(&fs, &label, all);
    let matches = looks_like.iter().any(|b| b.name == desc.name);
    if !matches {
        let what = if looks_like.is_empty() {
            format!(
                "its boot partition (label {label:?}) matches no supported base image ({})",
                all.iter()
                    .map(|b| b.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            format!(
                "its boot partition (label {label:?}) looks like {} (platform {})",
                looks_like[0].description, looks_like[0].platform
            )
        };
        bail!(
            "node {} has platform {}, which needs {}, but {what}; pick the base image that matches the node's platform, or change the node's platform",
            job.node,
            desc.platform,
            desc.description
        );
    }
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
    let old = String::from_utf8(disk::read(&fs, "cmdline.txt")?)
        .context("cmdline.txt is not UTF-8 text")?;
    let cmdline = disk::edit_cmdline(&old, &words);

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
    files.push(("cmdline.txt", cmdline.as_bytes()));
    let (need, have) = disk::room(&fs, &files)?;
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
    Ok(Made {
        node: job.node.to_string(),
        output: job.output.clone(),
        base: desc.name.clone(),
        seed: match desc.seed {
            SeedKind::Nocloud => "nocloud",
            SeedKind::Firstrun => "firstrun",
        },
        instance_id: id,
        cmdline: cmdline.trim_end().to_string(),
        image_bytes: len,
    })
}

/// The descriptions a boot partition matches: label, boot files, and the
/// NoCloud placeholders present exactly when the description expects them.
fn identify<'b>(fs: &disk::Fat<'_>, label: &str, all: &'b [BaseImage]) -> Vec<&'b BaseImage> {
    let has_seed_files = ["user-data", "meta-data"]
        .iter()
        .all(|f| disk::exists(fs, f));
    all.iter()
        .filter(|b| b.boot_labels.iter().any(|l| l.eq_ignore_ascii_case(label)))
        .filter(|b| {
            if b.placeholders.is_empty() {
                !has_seed_files
            } else {
                b.placeholders.iter().all(|f| disk::exists(fs, f))
            }
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
        let n = source::read_full(reader, &mut buf)?;
        if n == 0 {
            return Ok(());
        }
        sink.write_all(&buf[..n])?;
        progress.advance(n as u64);
    }
}
