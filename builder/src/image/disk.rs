//! The disk image itself: its MBR, a partition as a bounded stream, and the
//! FAT boot partition edited in place (no mount, no root).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

use anyhow::{bail, Context};

pub const SECTOR: u64 = 512;

/// A primary MBR partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub number: u8,
    pub kind: u8,
    /// Byte offset and length in the image.
    pub start: u64,
    pub len: u64,
}

pub const FAT_TYPES: &[u8] = &[0x01, 0x04, 0x06, 0x0b, 0x0c, 0x0e];

/// Finds partition `number` of an MBR disk image and checks that it is a FAT
/// partition lying inside the image.
pub fn fat_partition(image: &File, image_len: u64, number: u8) -> anyhow::Result<Partition> {
    let mut mbr = [0u8; SECTOR as usize];
    if image_len < SECTOR {
        bail!("the image is {image_len} bytes long: too short to hold a partition table");
    }
    image.read_exact_at(&mut mbr, 0)?;
    if mbr[510..512] != [0x55, 0xAA] {
        bail!("the image has no MBR partition table (no 0x55AA signature in its first sector): not a Raspberry Pi disk image");
    }
    let header = mbrman::MBRHeader::read_from(&mut io::Cursor::new(&mbr[..]))
        .map_err(|e| anyhow::anyhow!("the image's MBR does not parse: {e}"))?;
    let entries: Vec<_> = header.iter().map(|(_, e)| e.clone()).collect();
    if entries.iter().any(|e| e.sys == 0xEE) {
        bail!("the image is GPT-partitioned (protective MBR, type 0xEE): haseed writes MBR Raspberry Pi images (Raspberry Pi OS, Ubuntu for Raspberry Pi)");
    }
    check_layout(&entries)?;
    let Some(e) = entries.get(usize::from(number) - 1).filter(|e| e.is_used()) else {
        bail!("the image has no partition {number} (its boot partition)");
    };
    if !FAT_TYPES.contains(&e.sys) {
        bail!(
            "partition {number} has type 0x{:02x}, not FAT (0x0b/0x0c expected for a Raspberry Pi boot partition)",
            e.sys
        );
    }
    let start = u64::from(e.starting_lba) * SECTOR;
    let len = u64::from(e.sectors) * SECTOR;
    if e.starting_lba == 0 || len == 0 {
        bail!("partition {number} is empty or starts at sector 0: the partition table is broken");
    }
    if start + len > image_len {
        bail!(
            "partition {number} ends at byte {}, past the end of the image ({image_len} bytes): the image is truncated or its partition table is wrong",
            start + len
        );
    }
    Ok(Partition {
        number,
        kind: e.sys,
        start,
        len,
    })
}

/// Every used partition of an MBR image (its table already checked by
/// [`fat_partition`]), in table order.
pub fn partitions(image: &File, image_len: u64) -> anyhow::Result<Vec<Partition>> {
    let mut mbr = [0u8; SECTOR as usize];
    image.read_exact_at(&mut mbr, 0)?;
    let header = mbrman::MBRHeader::read_from(&mut io::Cursor::new(&mbr[..]))
        .map_err(|e| anyhow::anyhow!("the image's MBR does not parse: {e}"))?;
    Ok(header
        .iter()
        .filter(|(_, e)| e.is_used())
        .map(|(i, e)| Partition {
            number: i as u8,
            kind: e.sys,
            start: u64::from(e.starting_lba) * SECTOR,
            len: u64::from(e.sectors) * SECTOR,
        })
        .filter(|p| p.start < image_len)
        .collect())
}

/// Refuses a partition table whose partitions overlap each other or the MBR
/// itself: editing one would then write into another (or into the table).
/// Raspberry Pi OS and Ubuntu images have two primary partitions, the first
/// at 4 or 8 MiB.
fn check_layout(entries: &[mbrman::MBRPartitionEntry]) -> anyhow::Result<()> {
    let used: Vec<(usize, u64, u64)> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.is_used())
        .map(|(i, e)| {
            let start = u64::from(e.starting_lba);
            (i + 1, start, start + u64::from(e.sectors))
        })
        .collect();
    for &(n, start, end) in &used {
        if start == 0 {
            bail!(
                "partition {n} starts at sector 0, over the MBR itself (sectors 0..{end}): the partition table is broken; use an unmodified base image"
            );
        }
    }
    for (i, &(a, a0, a1)) in used.iter().enumerate() {
        for &(b, b0, b1) in &used[i + 1..] {
            if a0 < b1 && b0 < a1 {
                bail!(
                    "partitions {a} (sectors {a0}..{a1}) and {b} (sectors {b0}..{b1}) overlap: the partition table is broken; use an unmodified base image"
                );
            }
        }
    }
    Ok(())
}

/// Checks partition `p`'s FAT before the FAT library touches it (see
/// [`super::fatcheck`]): a corrupt table would make the library loop forever
/// or read gigabytes.
pub fn check_fat(file: &File, p: &Partition) -> anyhow::Result<super::fatcheck::Checked> {
    use super::fatcheck::Corrupt;
    super::fatcheck::check(&mut Slice::new(file, p), p.len).map_err(|e| match e {
        Corrupt::TooBig { .. } => anyhow::anyhow!(
            "the boot partition (partition {}): {e}; use an unmodified base image",
            p.number
        ),
        e => anyhow::anyhow!(
            "the boot partition's FAT (partition {}) is corrupt: {e}; `fsck.vfat -n` reports such damage too; use an unmodified base image (download or decompress it again)",
            p.number
        ),
    })
}

/// A partition as a stream: reads and writes stay inside it.
pub struct Slice<'f> {
    file: &'f File,
    start: u64,
    len: u64,
    pos: u64,
    /// Where written bytes are noted, as (start, end) in the image.
    log: Option<&'f WriteLog>,
}

/// The byte spans (start, end) of the image a FAT file system wrote: what
/// haseed changed in the boot partition.
pub type WriteLog = std::cell::RefCell<Vec<(u64, u64)>>;

impl<'f> Slice<'f> {
    pub fn new(file: &'f File, p: &Partition) -> Self {
        Slice {
            file,
            start: p.start,
            len: p.len,
            pos: 0,
            log: None,
        }
    }
}

impl Read for Slice<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        let got = self.file.read_at(&mut buf[..n], self.start + self.pos)?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl Write for Slice<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.pos + buf.len() as u64 > self.len {
            return Err(io::Error::other("write past the end of the boot partition"));
        }
        let at = self.start + self.pos;
        let n = self.file.write_at(buf, at)?;
        if let Some(log) = self.log {
            log.borrow_mut().push((at, at + n as u64));
        }
        self.pos += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Slice<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match pos {
            Some(p) if p <= self.len => {
                self.pos = p;
                Ok(p)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek outside the boot partition",
            )),
        }
    }
}

/// Every file haseed writes carries 2000-01-01 00:00:00: two runs give the
/// same bytes.
#[derive(Debug)]
struct FixedTime;

impl fatfs::TimeProvider for FixedTime {
    fn get_current_date(&self) -> fatfs::Date {
        fatfs::Date {
            year: 2000,
            month: 1,
            day: 1,
        }
    }
    fn get_current_date_time(&self) -> fatfs::DateTime {
        fatfs::DateTime {
            date: self.get_current_date(),
            time: fatfs::Time {
                hour: 0,
                min: 0,
                sec: 0,
                millis: 0,
            },
        }
    }
}

static FIXED_TIME: FixedTime = FixedTime;

pub type Fat<'f> = fatfs::FileSystem<Slice<'f>>;

/// Opens a FAT file system on a partition. Call [`check_fat`] first.
pub fn open_fat<'f>(file: &'f File, p: &Partition) -> anyhow::Result<Fat<'f>> {
    open_fat_on(Slice::new(file, p), p.number)
}

/// [`open_fat`], noting in `log` every byte span it writes.
pub fn open_fat_logged<'f>(
    file: &'f File,
    p: &Partition,
    log: &'f WriteLog,
) -> anyhow::Result<Fat<'f>> {
    let mut slice = Slice::new(file, p);
    slice.log = Some(log);
    open_fat_on(slice, p.number)
}

/// Opens a FAT file system on any disk (the fuzz harness's in-memory one).
pub fn open_fat_on<T: fatfs::ReadWriteSeek>(
    disk: T,
    number: u8,
) -> anyhow::Result<fatfs::FileSystem<T>> {
    fatfs::FileSystem::new(disk, fatfs::FsOptions::new().time_provider(&FIXED_TIME))
        .map_err(|e| anyhow::anyhow!("partition {number} is not a readable FAT file system: {e}"))
}

pub fn label<T: fatfs::ReadWriteSeek>(fs: &fatfs::FileSystem<T>) -> String {
    fs.volume_label().trim_end().to_string()
}

pub fn exists<T: fatfs::ReadWriteSeek>(fs: &fatfs::FileSystem<T>, name: &str) -> bool {
    fs.root_dir().open_file(name).is_ok()
}

/// The first `max + 1` bytes of a file (`/` between directory names), so
/// a caller tells "longer than max"; `None` if it is missing or unreadable.
pub fn read_capped<T: fatfs::ReadWriteSeek>(
    fs: &fatfs::FileSystem<T>,
    path: &str,
    max: u64,
) -> Option<Vec<u8>> {
    let f = fs.root_dir().open_file(path).ok()?;
    let mut v = Vec::new();
    f.take(max + 1).read_to_end(&mut v).ok()?;
    Some(v)
}

/// The files the firmware may read the kernel command line from, as the
/// boot partition's config.txt decides ([`super::bootcfg`]).
pub fn cmdlines<T: fatfs::ReadWriteSeek>(
    fs: &fatfs::FileSystem<T>,
) -> anyhow::Result<Vec<super::bootcfg::Cmdline>> {
    super::bootcfg::cmdlines(&mut |p| read_capped(fs, p, super::bootcfg::CONFIG_MAX))
}

/// Bytes a set of files needs on this file system (whole clusters each),
/// and the bytes free, from the checked FAT (FSInfo's free count may be stale
/// and `fatfs` trusts it).
pub fn room(fat: &super::fatcheck::Checked, files: &[(&str, &[u8])]) -> (u64, u64) {
    let cluster = fat.cluster_size;
    let mut need = 0;
    let mut have = fat.free_clusters * cluster;
    for (name, bytes) in files {
        need += (bytes.len() as u64).div_ceil(cluster) * cluster;
        // Space a replaced file frees.
        if let Some(e) = fat.find(name) {
            have += e.clusters * cluster;
        }
    }
    (need, have)
}

/// Creates or replaces a file (`/` between directory names; the
/// directories must exist).
pub fn write<T: fatfs::ReadWriteSeek>(
    fs: &fatfs::FileSystem<T>,
    name: &str,
    bytes: &[u8],
) -> anyhow::Result<()> {
    let mut f = fs
        .root_dir()
        .create_file(name)
        .with_context(|| format!("creating {name} on the boot partition"))?;
    f.truncate()?;
    f.write_all(bytes)
        .with_context(|| format!("writing {name} on the boot partition"))?;
    f.flush()?;
    Ok(())
}

/// Appends kernel command-line words to a cmdline.txt: one line; a word whose
/// key (before '=') is already there replaces it, an identical word is kept
/// once.
pub fn edit_cmdline(old: &str, add: &[String]) -> String {
    let key = |w: &str| w.split_once('=').map(|(k, _)| k.to_string());
    let mut words: Vec<String> = old.split_whitespace().map(str::to_string).collect();
    for w in add {
        if words.contains(w) {
            continue;
        }
        if let Some(k) = key(w) {
            words.retain(|old| key(old).as_deref() != Some(k.as_str()));
        }
        words.push(w.clone());
    }
    let mut line = words.join(" ");
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_words_are_appended_once_and_keys_replaced() {
        let old = "console=serial0,115200 console=tty1 root=PARTUUID=1234-02 rootfstype=ext4 fsck.repair=yes rootwait ds=nocloud;i=old\n";
        let new = edit_cmdline(
            old,
            &[
                "ds=nocloud;i=haseed-1".into(),
                "cgroup_enable=memory".into(),
                "rootwait".into(),
            ],
        );
        assert_eq!(
            new,
            "console=serial0,115200 console=tty1 root=PARTUUID=1234-02 rootfstype=ext4 fsck.repair=yes rootwait ds=nocloud;i=haseed-1 cgroup_enable=memory\n"
        );
        assert_eq!(edit_cmdline(&new, &["ds=nocloud;i=haseed-1".into()]), new);
    }

    #[test]
    fn the_partition_table_is_checked() {
        let tmp = tempfile::tempfile().unwrap();
        tmp.set_len(4 << 20).unwrap();
        let err = fat_partition(&tmp, 4 << 20, 1).unwrap_err().to_string();
        assert!(err.contains("no MBR partition table"), "{err}");

        let mut mbr = [0u8; 512];
        mbr[510] = 0x55;
        mbr[511] = 0xAA;
        let entry = |mbr: &mut [u8; 512], i: usize, kind: u8, start: u32, sectors: u32| {
            let at = 446 + 16 * i;
            mbr[at + 4] = kind;
            mbr[at + 8..at + 12].copy_from_slice(&start.to_le_bytes());
            mbr[at + 12..at + 16].copy_from_slice(&sectors.to_le_bytes());
        };
        entry(&mut mbr, 0, 0x0c, 2048, 16384);
        tmp.write_all_at(&mbr, 0).unwrap();
        let err = fat_partition(&tmp, 4 << 20, 1).unwrap_err().to_string();
        assert!(err.contains("past the end of the image"), "{err}");
        let err = fat_partition(&tmp, 4 << 20, 2).unwrap_err().to_string();
        assert!(err.contains("no partition 2"), "{err}");

        entry(&mut mbr, 0, 0x83, 2048, 4096);
        tmp.write_all_at(&mbr, 0).unwrap();
        let err = fat_partition(&tmp, 4 << 20, 1).unwrap_err().to_string();
        assert!(err.contains("type 0x83, not FAT"), "{err}");

        entry(&mut mbr, 0, 0xEE, 1, 8191);
        tmp.write_all_at(&mbr, 0).unwrap();
        let err = fat_partition(&tmp, 4 << 20, 1).unwrap_err().to_string();
        assert!(err.contains("GPT"), "{err}");

        entry(&mut mbr, 0, 0x0c, 2048, 4096);
        tmp.write_all_at(&mbr, 0).unwrap();
        let p = fat_partition(&tmp, 4 << 20, 1).unwrap();
        assert_eq!((p.start, p.len), (1 << 20, 2 << 20));

        // A second partition: adjacent is fine, one sector of overlap is not,
        // nor is one over the MBR (even when the boot partition is sound).
        entry(&mut mbr, 1, 0x83, 6144, 2048);
        tmp.write_all_at(&mbr, 0).unwrap();
        fat_partition(&tmp, 4 << 20, 1).unwrap();
        entry(&mut mbr, 1, 0x83, 6143, 2048);
        tmp.write_all_at(&mbr, 0).unwrap();
        let err = fat_partition(&tmp, 4 << 20, 1).unwrap_err().to_string();
        assert!(
            err.contains("partitions 1 (sectors 2048..6144) and 2 (sectors 6143..8191) overlap"),
            "{err}"
        );
        entry(&mut mbr, 3, 0x83, 0, 100);
        entry(&mut mbr, 1, 0x83, 6144, 2048);
        tmp.write_all_at(&mbr, 0).unwrap();
        let err = fat_partition(&tmp, 4 << 20, 1).unwrap_err().to_string();
        assert!(
            err.contains("partition 4 starts at sector 0, over the MBR"),
            "{err}"
        );
    }
}
