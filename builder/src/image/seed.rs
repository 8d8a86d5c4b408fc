//! `haseed seed`: a small FAT disk labelled `cidata` holding `user-data`,
//! `meta-data` and `network-config`, the form cloud-init's NoCloud datasource
//! reads on virtual machines (attach it as a second disk).

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::Context;

use super::disk;
use crate::render::NodeArtifacts;

/// Formats a `cidata` FAT volume with the node's three seed files into
/// `out` (atomically: a temporary file renamed into place).
pub fn write(a: &NodeArtifacts, out: &Path) -> anyhow::Result<u64> {
    let files: [(&str, &[u8]); 3] = [
        ("user-data", a.user_data.as_bytes()),
        ("meta-data", a.meta_data.as_bytes()),
        ("network-config", a.network_config.as_bytes()),
    ];
    let content: u64 = files.iter().map(|(_, b)| b.len() as u64).sum();
    // Room for the content at one cluster per 512 bytes plus FAT overhead;
    // at least 1 MiB, whole MiB.
    let size = (content * 2 + (256 << 10)).div_ceil(1 << 20).max(1) << 20;

    if out.is_dir() {
        anyhow::bail!(
            "-o {}: is a directory; give the seed disk's file name (e.g. {})",
            out.display(),
            out.join("seed.img").display()
        );
    }
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut dirs = super::CreatedDirs::default();
    dirs.create(dir)?;
    let written = write_in(a, out, dir, &files, size);
    if written.is_err() {
        dirs.remove();
    }
    written
}

fn write_in(
    a: &NodeArtifacts,
    out: &Path,
    dir: &Path,
    files: &[(&str, &[u8]); 3],
    size: u64,
) -> anyhow::Result<u64> {
    let tmp = tempfile::Builder::new()
        .prefix(".haseed-")
        .suffix(".seed.part")
        .tempfile_in(dir)?;
    let file = tmp.as_file();
    file.set_len(size)?;
    {
        let mut f = file.try_clone()?;
        f.seek(SeekFrom::Start(0))?;
        // The volume id comes from the instance id: same seed, same bytes.
        let id = super::instance_id(a);
        let vol_id = id.bytes().fold(0x811c_9dc5u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
        fatfs::format_volume(
            &mut f,
            fatfs::FormatVolumeOptions::new()
                .volume_label(*b"cidata     ")
                .volume_id(vol_id),
        )
        .context("formatting the seed volume")?;
    }
    let part = disk::Partition {
        number: 0,
        kind: 0x01,
        start: 0,
        len: size,
    };
    let fs = disk::open_fat(file, &part)?;
    for (name, bytes) in files {
        disk::write(&fs, name, bytes)?;
    }
    fs.unmount()?;
    let mut f = file.try_clone()?;
    f.flush()?;
    file.sync_all()?;
    let mut perms = file.metadata()?.permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
    file.set_permissions(perms)?;
    // The persist error's own text repeats its io::Error: keep only that.
    tmp.persist(out)
        .map_err(|e| e.error)
        .with_context(|| format!("moving the seed into place at {}", out.display()))?;
    Ok(size)
}
