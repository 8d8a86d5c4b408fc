//! The FAT check's property, for the `fat` cargo-fuzz target
//! (fuzz/fuzz_targets/fat.rs), the replay of its corpus and the randomised
//! test on stable (tests/fuzz_corpus.rs).
//!
//! The input picks one of three small boot partitions that `fatfs` formats
//! and fills in memory (FAT12, FAT16, FAT32, with the files a Raspberry Pi
//! boot partition has) and pokes bytes, 16-bit or 32-bit values into its
//! metadata: boot and FSInfo sectors, the used start of both FATs, the root
//! directory's first sector.
//! Property: [`super::fatcheck::check`] refuses it, or haseed's own edit
//! (the `disk` functions `seed_image` calls: label, exists, the command-line
//! files config.txt names, read capped, room, write the seed and those
//! files, unmount) runs on it without a panic, ends (the fuzzer's timeout,
//! the test's deadline) and leaves a volume the check still accepts.

use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::OnceLock;

use super::{disk, fatcheck};

const PAGE: usize = 4096;

/// A disk in memory that stores only the pages written, so that a FAT32
/// volume (at least 65525 clusters) costs only its metadata.
#[derive(Clone)]
pub struct SparseDisk {
    pages: BTreeMap<u64, Box<[u8; PAGE]>>,
    len: u64,
    pos: u64,
}

impl SparseDisk {
    pub fn new(len: u64) -> Self {
        SparseDisk {
            pages: BTreeMap::new(),
            len,
            pos: 0,
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The written pages, (offset, bytes): what a file needs to hold it.
    pub fn pages(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.pages.iter().map(|(p, b)| (p * PAGE as u64, &b[..]))
    }

    fn poke(&mut self, at: u64, bytes: &[u8]) {
        self.pos = at;
        // Pokes stay inside the volume by construction (`Template::hot`).
        let _ = self.write_all(bytes);
    }
}

impl Read for SparseDisk {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        let mut done = 0;
        while done < n {
            let at = self.pos + done as u64;
            let (page, off) = (at / PAGE as u64, (at % PAGE as u64) as usize);
            let k = (PAGE - off).min(n - done);
            match self.pages.get(&page) {
                Some(p) => buf[done..done + k].copy_from_slice(&p[off..off + k]),
                None => buf[done..done + k].fill(0),
            }
            done += k;
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for SparseDisk {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.pos + buf.len() as u64 > self.len {
            return Err(io::Error::other("write past the end of the disk"));
        }
        let mut done = 0;
        while done < buf.len() {
            let at = self.pos + done as u64;
            let (page, off) = (at / PAGE as u64, (at % PAGE as u64) as usize);
            let k = (PAGE - off).min(buf.len() - done);
            let p = self
                .pages
                .entry(page)
                .or_insert_with(|| Box::new([0u8; PAGE]));
            p[off..off + k].copy_from_slice(&buf[done..done + k]);
            done += k;
        }
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for SparseDisk {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let p = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match p {
            Some(p) if p <= self.len => {
                self.pos = p;
                Ok(p)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek outside the disk",
            )),
        }
    }
}

/// A template volume and the bytes worth poking: the boot sector and FSInfo,
/// the used start of both FATs, the root directory's first sector.
pub struct Template {
    pub disk: SparseDisk,
    pub hot: Vec<(u64, u64)>,
}

impl Template {
    /// The `n`-th hot byte's offset (modulo their count).
    fn hot_offset(&self, n: u64) -> u64 {
        let total: u64 = self.hot.iter().map(|(_, l)| l).sum();
        let mut n = n % total;
        for &(start, len) in &self.hot {
            if n < len {
                return start + n;
            }
            n -= len;
        }
        unreachable!("n < total")
    }
}

fn make_template(kind: fatfs::FatType, sectors: u32) -> Template {
    let len = u64::from(sectors) * 512;
    let mut d = SparseDisk::new(len);
    fatfs::format_volume(
        &mut d,
        fatfs::FormatVolumeOptions::new()
            .fat_type(kind)
            .bytes_per_cluster(512)
            .total_sectors(sectors)
            .volume_label(*b"bootfs     ")
            .volume_id(0x5452_dd2b),
    )
    .expect("fatfs formats the template");
    d.pos = 0;
    {
        let fs = disk::open_fat_on(&mut d, 1).expect("the template opens");
        let files: &[(&str, &[u8])] = &[
            (
                "cmdline.txt",
                b"console=serial0,115200 console=tty1 root=PARTUUID=5452dd2b-02 rootwait quiet\n",
            ),
            ("config.txt", b"[all]\narm_64bit=1\ndtparam=audio=on\n"),
            ("kernel8.img", &[0x5a; 1500]),
            ("user-data", b"#cloud-config\n"),
            ("meta-data", b"instance_id: rpios-image\n"),
            ("network-config", b"network:\n  version: 2\n"),
        ];
        for (name, bytes) in files {
            disk::write(&fs, name, bytes).expect("the template takes its files");
        }
        // FSInfo's free count, which format_volume leaves unset (fsck.vfat
        // -n objects): counted now, written at unmount.
        fs.stats().expect("free clusters counted");
        fs.unmount().expect("unmounted");
    }
    d.pos = 0;
    fatcheck::check(&mut d, len).expect("the template passes the check");
    let mut b = [0u8; 512];
    d.seek(SeekFrom::Start(0)).expect("seek");
    d.read_exact(&mut b).expect("boot sector");
    let le16 = |at: usize| u64::from(u16::from_le_bytes([b[at], b[at + 1]]));
    let spf = match le16(0x16) {
        0 => u64::from(u32::from_le_bytes([b[0x24], b[0x25], b[0x26], b[0x27]])),
        n => n,
    };
    let fat1 = le16(0x0E) * 512;
    let fat2 = fat1 + spf * 512;
    // The fixed root directory (FAT12/16), else cluster 2 (FAT32's root).
    let root = fat1 + u64::from(b[0x10]) * spf * 512;
    d.pos = 0;
    Template {
        disk: d,
        hot: vec![(0, 1024), (fat1, 96), (fat2, 96), (root, 512)],
    }
}

/// The three templates, made once.
pub fn templates() -> &'static [Template; 3] {
    static T: OnceLock<[Template; 3]> = OnceLock::new();
    T.get_or_init(|| {
        [
            // 1 MiB: ~2000 clusters; 8 MiB: ~16000; 34 MiB: ~69000.
            make_template(fatfs::FatType::Fat12, 2048),
            make_template(fatfs::FatType::Fat16, 16384),
            make_template(fatfs::FatType::Fat32, 69632),
        ]
    })
}

/// The input decoded: a template and its pokes applied.
pub fn corrupted(data: &[u8]) -> SparseDisk {
    let Some((&pick, pokes)) = data.split_first() else {
        return templates()[0].disk.clone();
    };
    let t = &templates()[usize::from(pick) % 3];
    let mut d = t.disk.clone();
    for p in pokes.chunks_exact(7) {
        let at = t.hot_offset(u64::from(u32::from_le_bytes([p[1], p[2], p[3], p[4]])));
        let v = u16::from_le_bytes([p[5], p[6]]);
        match p[0] % 4 {
            0 => d.poke(at, &[v as u8]),
            1 => d.poke(at, &v.to_le_bytes()),
            // High values: end-of-chain, bad, reserved and out-of-range marks.
            2 => d.poke(at, &(0x0FFF_0000 | u32::from(v)).to_le_bytes()),
            _ => d.poke(at, &u32::from(v).to_le_bytes()),
        }
    }
    d.pos = 0;
    d
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FatOutcome {
    Refused,
    /// Passed the check; haseed's edit then failed cleanly (an error, e.g.
    /// FSInfo's signature, which fatfs checks and the check does not).
    EditFailed,
    Edited,
}

/// The property (see the module's comment). Err says what broke.
pub fn fat(data: &[u8]) -> Result<FatOutcome, String> {
    let mut d = corrupted(data);
    check_and_edit(&mut d)
}

/// The property on a given volume.
pub fn check_and_edit(d: &mut SparseDisk) -> Result<FatOutcome, String> {
    let len = d.len();
    let checked = match fatcheck::check(d, len) {
        Ok(c) => c,
        Err(_) => return Ok(FatOutcome::Refused),
    };
    d.pos = 0;
    match edit(d, &checked) {
        Ok(true) => {}
        Ok(false) => return Ok(FatOutcome::EditFailed),
        Err(e) => return Err(e),
    }
    d.pos = 0;
    fatcheck::check(d, len)
        .map(|_| FatOutcome::Edited)
        .map_err(|e| format!("haseed's edit left a volume the check refuses: {e}"))
}

/// haseed's edit, as `seed_image` does it. Ok(false): a clean error.
fn edit(d: &mut SparseDisk, checked: &fatcheck::Checked) -> Result<bool, String> {
    let Ok(fs) = disk::open_fat_on(&mut *d, 1) else {
        return Ok(false);
    };
    let _ = disk::label(&fs);
    let _ = disk::exists(&fs, "user-data");
    // Where config.txt says the command line is (a clean error otherwise).
    let Ok(paths) = disk::cmdlines(&fs) else {
        return Ok(false);
    };
    let mut lines = Vec::new();
    for c in paths {
        let Some(bytes) = disk::read_capped(&fs, &c.path, fatcheck::CMDLINE_MAX) else {
            continue;
        };
        // read_capped stops one byte past the cap, so nothing longer is
        // ever read; a longer file is refused, as seed_image refuses it.
        if bytes.len() as u64 > fatcheck::CMDLINE_MAX {
            return Ok(false);
        }
        let mut line = String::from_utf8_lossy(&bytes).into_owned();
        line.push_str(" ds=nocloud;i=haseed-fuzz\n");
        lines.push((c.path, line));
    }
    let mut files: Vec<(&str, &[u8])> = vec![
        ("user-data", &[b'u'; 1300]),
        (
            "meta-data",
            b"instance-id: haseed-fuzz\nlocal-hostname: lb1\n",
        ),
        ("network-config", &[b'n'; 600]),
    ];
    for (path, line) in &lines {
        files.push((path.as_str(), line.as_bytes()));
    }
    let (need, have) = disk::room(checked, &files);
    if need > have {
        return Ok(false);
    }
    for (name, bytes) in &files {
        if disk::write(&fs, name, bytes).is_err() {
            return Ok(false);
        }
    }
    Ok(fs.unmount().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fatcheck::Corrupt;

    fn read(d: &mut SparseDisk, at: u64, n: usize) -> Vec<u8> {
        let mut b = vec![0u8; n];
        d.seek(SeekFrom::Start(at)).unwrap();
        d.read_exact(&mut b).unwrap();
        b
    }

    /// (bits per FAT entry, byte offset of the first FAT)
    fn fat_of(d: &mut SparseDisk) -> (u32, u64) {
        let b = read(d, 0, 512);
        let bits = match templates().iter().position(|t| t.disk.len() == d.len()) {
            Some(0) => 12,
            Some(1) => 16,
            _ => 32,
        };
        (
            bits,
            u64::from(u16::from_le_bytes([b[0x0E], b[0x0F]])) * 512,
        )
    }

    fn set_fat(d: &mut SparseDisk, c: u32, v: u32) {
        let (bits, fat) = fat_of(d);
        match bits {
            12 => {
                let at = fat + u64::from(c + c / 2);
                let old = read(d, at, 2);
                let old = u16::from_le_bytes([old[0], old[1]]);
                let new = if c.is_multiple_of(2) {
                    (old & 0xF000) | (v as u16 & 0x0FFF)
                } else {
                    (old & 0x000F) | ((v as u16) << 4)
                };
                d.poke(at, &new.to_le_bytes());
            }
            16 => d.poke(fat + u64::from(c) * 2, &(v as u16).to_le_bytes()),
            _ => d.poke(fat + u64::from(c) * 4, &v.to_le_bytes()),
        }
    }

    /// The directory entry of an 8.3 name as stored, and its first cluster.
    fn entry(d: &SparseDisk, short: &[u8; 11]) -> (u64, u32) {
        for (at, page) in d.pages() {
            for i in (0..PAGE).step_by(32) {
                if &page[i..i + 11] == short {
                    let e = &page[i..i + 32];
                    let c = u32::from(u16::from_le_bytes([e[20], e[21]])) << 16
                        | u32::from(u16::from_le_bytes([e[26], e[27]]));
                    return (at + i as u64, c);
                }
            }
        }
        panic!("no entry {}", String::from_utf8_lossy(short));
    }

    fn refused(mut d: SparseDisk) -> Corrupt {
        let len = d.len();
        d.pos = 0;
        fatcheck::check(&mut d, len).expect_err("the check refuses it")
    }

    #[test]
    fn clean_templates_pass_and_take_the_edit() {
        for t in templates() {
            let mut d = t.disk.clone();
            assert_eq!(check_and_edit(&mut d), Ok(FatOutcome::Edited));
            // Edited twice (a second node from the same base): still fine.
            assert_eq!(check_and_edit(&mut d), Ok(FatOutcome::Edited));
        }
        let kinds: Vec<_> = templates()
            .iter()
            .map(|t| {
                let mut d = t.disk.clone();
                fatcheck::check(&mut d, t.disk.len()).unwrap().kind
            })
            .collect();
        use fatcheck::FatKind::*;
        assert_eq!(kinds, [Fat12, Fat16, Fat32]);
    }

    #[test]
    fn every_chain_check_refuses_its_corruption_on_every_fat_type() {
        for (i, t) in templates().iter().enumerate() {
            let (cmd_at, cmd) = entry(&t.disk, b"CMDLINE TXT");
            let (_, cfg) = entry(&t.disk, b"CONFIG  TXT");
            let clusters = {
                let mut d = t.disk.clone();
                fatcheck::check(&mut d, t.disk.len()).unwrap().clusters
            };
            let case = |f: &dyn Fn(&mut SparseDisk)| {
                let mut d = t.disk.clone();
                f(&mut d);
                refused(d)
            };
            let e = case(&|d| set_fat(d, cmd, cmd));
            assert!(
                matches!(&e, Corrupt::Loop { what, cluster, .. } if what == "cmdline.txt" && *cluster == cmd),
                "{i}: {e}"
            );
            // A directory in the root (fatfs makes it; the template has none:
            // fatfs 0.3.6 gives "." and ".." long names, which fsck.vfat
            // rejects) whose chain loops.
            let e = case(&|d| {
                d.pos = 0;
                let fs = disk::open_fat_on(&mut *d, 1).unwrap();
                fs.root_dir().create_dir("overlays").unwrap();
                fs.unmount().unwrap();
                let (_, c) = entry(d, b"OVERLAYS   ");
                set_fat(d, c, c);
            });
            assert!(
                matches!(&e, Corrupt::Loop { what, .. } if what == "directory overlays"),
                "{i}: {e}"
            );
            let e = case(&|d| set_fat(d, cmd, clusters + 2));
            assert!(
                matches!(&e, Corrupt::OutOfRange { value, .. } if *value == clusters + 2),
                "{i}: {e}"
            );
            let e = case(&|d| set_fat(d, cfg, cmd));
            assert!(matches!(&e, Corrupt::CrossLinked { .. }), "{i}: {e}");
            let e = case(&|d| set_fat(d, cmd, 0));
            assert!(
                matches!(
                    &e,
                    Corrupt::Unusable {
                        kind: "the free",
                        ..
                    }
                ),
                "{i}: {e}"
            );
            let e = case(&|d| set_fat(d, cmd, 1));
            assert!(matches!(&e, Corrupt::Unusable { .. }), "{i}: {e}");
            // A size of two clusters over a chain of one.
            let e = case(&|d| d.poke(cmd_at + 28, &1000u32.to_le_bytes()));
            assert!(
                matches!(
                    &e,
                    Corrupt::SizeMismatch {
                        size: 1000,
                        clusters: 1,
                        ..
                    }
                ),
                "{i}: {e}"
            );
            let e = case(&|d| d.poke(cmd_at + 28, &u32::MAX.to_le_bytes()));
            assert!(matches!(&e, Corrupt::SizeMismatch { .. }), "{i}: {e}");
            // A sound cmdline.txt too large to read whole.
            let e = case(&|d| {
                d.pos = 0;
                let fs = disk::open_fat_on(&mut *d, 1).unwrap();
                disk::write(&fs, "cmdline.txt", &[b'q'; 70_000]).unwrap();
                fs.unmount().unwrap();
            });
            assert!(
                matches!(
                    &e,
                    Corrupt::TooBig {
                        size: 70_000,
                        cap: 65_536,
                        ..
                    }
                ),
                "{i}: {e}"
            );
            // The 4 GiB claim over a looping chain: the loop is found first.
            let e = case(&|d| {
                set_fat(d, cmd, cmd);
                d.poke(cmd_at + 28, &u32::MAX.to_le_bytes());
            });
            assert!(matches!(&e, Corrupt::Loop { .. }), "{i}: {e}");
            let e = case(&|d| d.poke(0x0D, &[3]));
            assert!(e.to_string().contains("3 sectors per cluster"), "{i}: {e}");
            let e = case(&|d| d.poke(510, &[0, 0]));
            assert!(e.to_string().contains("0x55AA"), "{i}: {e}");
            if i == 2 {
                // Half the clusters: a FAT16 count in FAT32 fields.
                let e = case(&|d| d.poke(0x0D, &[2]));
                assert!(e.to_string().contains("clusters make it Fat16"), "{e}");
                // FAT32: the root directory is a chain too.
                let e = case(&|d| set_fat(d, 2, 2));
                assert!(
                    matches!(&e, Corrupt::Loop { what, cluster: 2, .. } if what == "the root directory"),
                    "{e}"
                );
                let e = case(&|d| d.poke(0x20, &u32::MAX.to_le_bytes()));
                assert!(matches!(&e, Corrupt::PastPartition { .. }), "{e}");
                // One FAT sector for 69000 clusters.
                let e = case(&|d| d.poke(0x24, &1u32.to_le_bytes()));
                assert!(e.to_string().contains("entries for"), "{e}");
            }
        }
    }

    /// A replaced file frees its clusters; the free count is the FAT's, not
    /// FSInfo's.
    #[test]
    fn room_counts_the_fat_not_fsinfo() {
        let t = &templates()[2];
        let mut d = t.disk.clone();
        let before = fatcheck::check(&mut d, t.disk.len()).unwrap();
        // FSInfo's free count (offset 488 of sector 1) claims nearly nothing.
        d.poke(512 + 488, &5u32.to_le_bytes());
        let after = fatcheck::check(&mut d, t.disk.len()).unwrap();
        assert_eq!(before.free_clusters, after.free_clusters);
        assert!(after.free_clusters > 60_000);
        let (need, have) = disk::room(&after, &[("cmdline.txt", &[1u8; 513])]);
        assert_eq!(need, 1024);
        assert_eq!(have, (after.free_clusters + 1) * 512);
    }

    /// Subdirectories are checked like the root: their files' chains, a
    /// directory whose chain is its own ancestor's, a directory chain longer
    /// than a FAT directory may be, nesting past the bound. Files in them
    /// are found by path.
    #[test]
    fn subdirectories_are_walked_and_bounded() {
        let t = &templates()[2];
        let with = |f: &dyn Fn(&fatfs::FileSystem<&mut SparseDisk>)| {
            let mut d = t.disk.clone();
            {
                let fs = disk::open_fat_on(&mut d, 1).unwrap();
                f(&fs);
                fs.unmount().unwrap();
            }
            d
        };
        // current/cmdline.txt, found by its path; its chain looped: refused.
        let mut d = with(&|fs| {
            fs.root_dir().create_dir("current").unwrap();
            disk::write(fs, "current/cmdline.txt", b"quiet\n").unwrap();
        });
        let len = d.len();
        d.pos = 0;
        let c = fatcheck::check(&mut d, len).unwrap();
        let e = c.find("CURRENT/cmdline.txt").expect("found by path");
        assert_eq!((e.size, e.dir), (6, false));
        assert!(c.find("current").unwrap().dir);
        assert!(c.find("cmdline.txt").is_some(), "the root one too");
        let (_, first) = entry(&d, b"CMDLINE TXT");
        let mut looped = d.clone();
        // The root's cmdline.txt comes first in the pages; find current's.
        let sub = d
            .pages()
            .flat_map(|(at, p)| {
                (0..PAGE)
                    .step_by(32)
                    .map(move |i| (at + i as u64, p[i..i + 11].to_vec()))
            })
            .filter(|(_, n)| n == b"CMDLINE TXT")
            .map(|(at, _)| at)
            .nth(1)
            .expect("two cmdline.txt entries");
        let sub_first = u32::from(u16::from_le_bytes(
            read(&mut d, sub + 26, 2).try_into().unwrap(),
        ));
        assert_ne!(sub_first, first);
        set_fat(&mut looped, sub_first, sub_first);
        let e = refused(looped).to_string();
        assert!(
            e.contains("the cluster chain of current/cmdline.txt loops"),
            "{e}"
        );

        // The directory's first cluster is the root's (cluster 2): the root
        // claimed it, so the walk stops there instead of going round.
        let (dir_at, _) = entry(&d, b"CURRENT    ");
        let mut ancestor = d.clone();
        ancestor.poke(dir_at + 26, &2u16.to_le_bytes());
        ancestor.poke(dir_at + 20, &0u16.to_le_bytes());
        let e = refused(ancestor).to_string();
        assert!(e.contains("directory current is cross-linked"), "{e}");

        // A directory of 4097 clusters of 512 bytes: over 2 MiB.
        let mut big = with(&|fs| {
            disk::write(fs, "big", &vec![0u8; (4096 * 512) + 1]).unwrap();
        });
        let (big_at, _) = entry(&big, b"BIG        ");
        big.poke(big_at + 11, &[0x10]);
        big.poke(big_at + 28, &0u32.to_le_bytes());
        let e = refused(big).to_string();
        assert!(e.contains("directory big holds 2097664 bytes"), "{e}");

        // 16 levels pass, 17 are refused.
        let nest = |n: usize| {
            with(&|fs| {
                let mut path = String::new();
                for i in 0..n {
                    path.push_str(&format!("{}d{i}", if i == 0 { "" } else { "/" }));
                    fs.root_dir().create_dir(&path).unwrap();
                }
            })
        };
        let mut ok = nest(16);
        let len = ok.len();
        ok.pos = 0;
        fatcheck::check(&mut ok, len).expect("16 levels pass");
        let e = refused(nest(17)).to_string();
        assert!(e.contains("nested 17 levels deep"), "{e}");
    }
}
