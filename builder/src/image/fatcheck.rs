//! Checks a FAT boot partition before the FAT library touches it.
//!
//! `fatfs` (0.3.6) trusts the table: it follows a cluster chain until an
//! end-of-chain mark, so a chain that loops makes it spin forever (a looping
//! root directory) or read a file's claimed size round and round into memory
//! (a `cmdline.txt` of "4 GiB"), and freeing a chain that is cross-linked with
//! another file's corrupts that file. This module reads the boot sector and the
//! FAT itself and follows, with a visited map, every chain haseed will have
//! the library follow: the root directory's (FAT32) and that of every entry in
//! the root directory (haseed reads, replaces and creates files only there, so
//! subdirectories are never walked by haseed nor by the library on its
//! behalf). Every cluster number must lie inside the volume, no cluster may be
//! reached twice, a file's chain must be exactly as long as its size needs,
//! and a file haseed reads whole is capped. A base that fails is refused with
//! what is wrong and where; the library only ever sees a table that passed.
//!
//! It never writes. The layout rules are Microsoft's "FAT: General Overview of
//! On-Disk Format" (fatgen103, 2000), the same rules dosfstools' fsck.fat
//! applies; the boot sector limits are those `fatfs` 0.3.6 itself enforces
//! (`BiosParameterBlock::validate` in src/boot_sector.rs), so that whatever
//! passes here opens there.

use std::collections::VecDeque;
use std::io::{self, Read, Seek, SeekFrom};

/// Files haseed reads whole into memory, with the most it reads. The kernel
/// keeps at most 2048 bytes of command line on arm64 (`COMMAND_LINE_SIZE`,
/// arch/arm64/include/uapi/asm/setup.h in Linux); 64 KiB is far past any
/// real `cmdline.txt` and still nothing to hold in memory.
pub const READ_WHOLE: &[(&str, u64)] = &[("cmdline.txt", CMDLINE_MAX)];

/// The most of a kernel command line file haseed reads.
pub const CMDLINE_MAX: u64 = 64 << 10;

/// The most FAT haseed reads into memory: 16 M clusters (a 64 GiB volume of
/// 4 KiB clusters). Raspberry Pi boot partitions are 256-512 MiB.
const MAX_FAT_BYTES: u64 = 64 << 20;

/// What is wrong with a FAT volume, each naming the object.
#[derive(Debug, thiserror::Error)]
pub enum Corrupt {
    #[error("its boot sector is not a usable FAT boot sector: {0}")]
    BootSector(String),
    #[error("the FAT declares {bytes} bytes but the partition holds only {partition}")]
    PastPartition { bytes: u64, partition: u64 },
    #[error(
        "the FAT has {clusters} clusters, more than haseed reads for a boot partition ({max})"
    )]
    TooManyClusters { clusters: u64, max: u64 },
    #[error(
        "the cluster chain of {what} loops: cluster {cluster} comes back after {steps} clusters"
    )]
    Loop {
        what: String,
        cluster: u32,
        steps: u64,
    },
    #[error("the cluster chain of {what} is cross-linked with {other} at cluster {cluster}")]
    CrossLinked {
        what: String,
        other: String,
        cluster: u32,
    },
    #[error("the cluster chain of {what} points at cluster {value}{after}, outside the volume's clusters 2..={last}")]
    OutOfRange {
        what: String,
        value: u32,
        after: String,
        last: u32,
    },
    #[error("the cluster chain of {what} runs into {kind} cluster {cluster}")]
    Unusable {
        what: String,
        kind: &'static str,
        cluster: u32,
    },
    #[error("{what} claims {size} bytes but its cluster chain holds {clusters} clusters of {cluster_size} bytes")]
    SizeMismatch {
        what: String,
        size: u64,
        clusters: u64,
        cluster_size: u64,
    },
    #[error("{what} is {size} bytes, more than haseed reads ({cap} bytes): not a real {what}")]
    TooBig { what: String, size: u64, cap: u64 },
    #[error("directory {what} holds {bytes} bytes of entries, more than a FAT directory may ({max}: 65,536 entries of 32 bytes)")]
    DirTooBig { what: String, bytes: u64, max: u64 },
    #[error("directory {what} is nested {depth} levels deep, more than haseed reads ({max})")]
    TooDeep {
        what: String,
        depth: usize,
        max: usize,
    },
    #[error("reading the partition: {0}")]
    Io(#[from] io::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FatKind {
    Fat12,
    Fat16,
    Fat32,
}

/// A directory entry, as checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its path from the root, `/` between names, each the long name if
    /// there is one, else the 8.3 name ("current/CMDLINE.TXT").
    pub name: String,
    /// The same path in 8.3 names.
    pub short: String,
    pub size: u64,
    pub dir: bool,
    pub clusters: u64,
}

/// A volume that passed.
#[derive(Debug, Clone)]
pub struct Checked {
    pub kind: FatKind,
    pub cluster_size: u64,
    pub clusters: u32,
    /// Counted in the FAT itself, not taken from FSInfo (which may be stale).
    pub free_clusters: u64,
    /// Every file and directory, at any depth.
    pub entries: Vec<Entry>,
    /// What the volume uses, as (start, end) bytes from its start,
    /// ascending: everything before the data area (boot sector, FATs, a
    /// FAT12/16 root directory) and every cluster the FAT does not mark
    /// free or bad. The rest is free space, which FAT never reads.
    pub used: Vec<(u64, u64)>,
}

impl Checked {
    /// The entry a path names, the way the library matches it (long or
    /// short names, ASCII case-insensitive; `/` between names).
    pub fn find(&self, path: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| e.name.eq_ignore_ascii_case(path) || e.short.eq_ignore_ascii_case(path))
    }
}

fn le16(b: &[u8], at: usize) -> u32 {
    u32::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn read_at<R: Read + Seek>(r: &mut R, off: u64, buf: &mut [u8]) -> io::Result<()> {
    r.seek(SeekFrom::Start(off))?;
    r.read_exact(buf)
}

enum Next {
    Free,
    Bad,
    End,
    Reserved,
    Data(u32),
}

struct Volume {
    kind: FatKind,
    cluster_size: u64,
    clusters: u32,
    data_start: u64,
    /// The active FAT, one entry per cluster number 0..clusters+2.
    fat: Vec<u32>,
    /// FAT12/16: (byte offset, entries) of the fixed root directory;
    /// FAT32: the root directory's first cluster.
    root_fixed: Option<(u64, u64)>,
    root_cluster: u32,
}

impl Volume {
    fn next(&self, c: u32) -> Next {
        let v = self.fat[c as usize];
        let (bad, end) = match self.kind {
            FatKind::Fat12 => (0xFF7, 0xFF8),
            FatKind::Fat16 => (0xFFF7, 0xFFF8),
            FatKind::Fat32 => (0x0FFF_FFF7, 0x0FFF_FFF8),
        };
        match v {
            0 => Next::Free,
            1 => Next::Reserved,
            v if v == bad => Next::Bad,
            v if v >= end => Next::End,
            v => Next::Data(v),
        }
    }

    /// The bytes of a chain's clusters, in order.
    fn read_chain<R: Read + Seek>(&self, r: &mut R, chain: &[u32]) -> io::Result<Vec<u8>> {
        let cs = self.cluster_size as usize;
        let mut buf = vec![0u8; chain.len() * cs];
        for (i, c) in chain.iter().enumerate() {
            let at = self.data_start + u64::from(c - 2) * self.cluster_size;
            read_at(r, at, &mut buf[i * cs..(i + 1) * cs])?;
        }
        Ok(buf)
    }

    fn last(&self) -> u32 {
        self.clusters + 1
    }

    /// Follows a chain, marking its clusters as owned by `id`. Every step
    /// claims a cluster not claimed before or fails, so this ends within
    /// `clusters` steps whatever the table says.
    fn chain(
        &self,
        start: u32,
        id: usize,
        names: &[String],
        owner: &mut [u32],
    ) -> Result<Vec<u32>, Corrupt> {
        let what = || names[id].clone();
        let mut out = Vec::new();
        let mut c = start;
        loop {
            if c < 2 || c > self.last() {
                return Err(Corrupt::OutOfRange {
                    what: what(),
                    value: c,
                    after: match out.last() {
                        Some(p) => format!(" after cluster {p}"),
                        None => " as its first cluster".into(),
                    },
                    last: self.last(),
                });
            }
            let o = owner[c as usize];
            if o as usize == id + 1 {
                return Err(Corrupt::Loop {
                    what: what(),
                    cluster: c,
                    steps: out.len() as u64,
                });
            }
            if o != 0 {
                return Err(Corrupt::CrossLinked {
                    what: what(),
                    other: names[o as usize - 1].clone(),
                    cluster: c,
                });
            }
            owner[c as usize] = id as u32 + 1;
            out.push(c);
            match self.next(c) {
                Next::End => return Ok(out),
                Next::Data(n) => c = n,
                Next::Free => {
                    return Err(Corrupt::Unusable {
                        what: what(),
                        kind: "the free",
                        cluster: c,
                    })
                }
                Next::Bad => {
                    return Err(Corrupt::Unusable {
                        what: what(),
                        kind: "a bad",
                        cluster: c,
                    })
                }
                Next::Reserved => {
                    return Err(Corrupt::Unusable {
                        what: what(),
                        kind: "the reserved value 1 after",
                        cluster: c,
                    })
                }
            }
        }
    }
}

/// Reads the boot sector and the active FAT of a `len`-byte partition.
fn volume<R: Read + Seek>(r: &mut R, len: u64) -> Result<Volume, Corrupt> {
    let bad = |s: &str| Corrupt::BootSector(s.to_string());
    if len < 512 {
        return Err(bad("the partition is shorter than one sector"));
    }
    let mut b = [0u8; 512];
    read_at(r, 0, &mut b)?;
    if b[510..512] != [0x55, 0xAA] {
        return Err(bad("no 0x55AA signature"));
    }
    let bps = le16(&b, 0x0B);
    let spc = u32::from(b[0x0D]);
    let reserved = le16(&b, 0x0E);
    let fats = u32::from(b[0x10]);
    let root_entries = le16(&b, 0x11);
    let total16 = le16(&b, 0x13);
    let spf16 = le16(&b, 0x16);
    let total32 = le32(&b, 0x20);
    if !bps.is_power_of_two() || !(512..=4096).contains(&bps) {
        return Err(bad(&format!(
            "{bps} bytes per sector (512, 1024, 2048 or 4096)"
        )));
    }
    if !spc.is_power_of_two() || spc > 128 {
        return Err(bad(&format!(
            "{spc} sectors per cluster (a power of two up to 128)"
        )));
    }
    if reserved == 0 {
        return Err(bad("no reserved sector"));
    }
    if fats == 0 {
        return Err(bad("no FAT"));
    }
    let fat32 = spf16 == 0;
    let (spf, fs_version, ext_flags, root_cluster) = if fat32 {
        (
            le32(&b, 0x24),
            le16(&b, 0x2A),
            le16(&b, 0x28),
            le32(&b, 0x2C),
        )
    } else {
        (spf16, 0, 0, 0)
    };
    if spf == 0 {
        return Err(bad("FAT of 0 sectors"));
    }
    if fs_version != 0 {
        return Err(bad(&format!("unknown FAT32 version {fs_version}")));
    }
    if fat32 && (root_entries != 0 || total16 != 0) {
        return Err(bad(
            "a FAT32 volume with FAT12/16 fields set (root entries or 16-bit sector count)",
        ));
    }
    if !fat32 && root_entries == 0 {
        return Err(bad("a FAT12/16 volume without root directory entries"));
    }
    if (total16 == 0) == (total32 == 0) {
        return Err(bad(
            "both or neither of the 16- and 32-bit sector counts are set",
        ));
    }
    if fat32 {
        let (fs_info, backup) = (le16(&b, 0x30), le16(&b, 0x32));
        if fs_info >= reserved || backup >= reserved {
            return Err(bad(
                "FSInfo or backup boot sector outside the reserved sectors",
            ));
        }
    }
    let total = u64::from(if total16 != 0 { total16 } else { total32 });
    let bps = u64::from(bps);
    let root_sectors = (u64::from(root_entries) * 32).div_ceil(bps);
    let fat_start = u64::from(reserved);
    let data_sector = fat_start + u64::from(fats) * u64::from(spf) + root_sectors;
    if total <= data_sector {
        return Err(bad("no room for data clusters after the FATs"));
    }
    if total * bps > len {
        return Err(Corrupt::PastPartition {
            bytes: total * bps,
            partition: len,
        });
    }
    let clusters = (total - data_sector) / u64::from(spc);
    // Microsoft's rule, as fatfs and fsck.fat apply it: the count alone
    // says which FAT this is.
    let kind = if clusters < 4085 {
        FatKind::Fat12
    } else if clusters < 65525 {
        FatKind::Fat16
    } else {
        FatKind::Fat32
    };
    if (kind == FatKind::Fat32) != fat32 {
        return Err(bad(&format!(
            "{clusters} clusters make it {kind:?}, but its fields are those of {}",
            if fat32 { "FAT32" } else { "FAT12/16" }
        )));
    }
    let bits = match kind {
        FatKind::Fat12 => 12,
        FatKind::Fat16 => 16,
        FatKind::Fat32 => 32,
    };
    let need = (clusters + 2) * bits / 8 + 1;
    if need > MAX_FAT_BYTES {
        return Err(Corrupt::TooManyClusters {
            clusters,
            max: MAX_FAT_BYTES * 8 / bits - 2,
        });
    }
    let fat_bytes = u64::from(spf) * bps;
    if fat_bytes * 8 / bits < clusters + 2 {
        return Err(bad(&format!(
            "a FAT of {} entries for {clusters} clusters",
            fat_bytes * 8 / bits
        )));
    }
    // FAT32 may mirror one active FAT only (fatgen103, BPB_ExtFlags).
    let active = if fat32 && ext_flags & 0x80 != 0 {
        ext_flags & 0x0F
    } else {
        0
    };
    if active >= fats {
        return Err(bad(&format!("active FAT {active} of {fats}")));
    }
    let mut raw = vec![0u8; need.min(fat_bytes) as usize];
    read_at(
        r,
        (fat_start + u64::from(active) * u64::from(spf)) * bps,
        &mut raw,
    )?;
    let n = clusters as usize + 2;
    let fat: Vec<u32> = match kind {
        FatKind::Fat12 => (0..n)
            .map(|c| {
                let at = c + c / 2;
                let v = le16(&raw, at);
                if c.is_multiple_of(2) {
                    v & 0x0FFF
                } else {
                    v >> 4
                }
            })
            .collect(),
        FatKind::Fat16 => (0..n).map(|c| le16(&raw, 2 * c)).collect(),
        FatKind::Fat32 => (0..n).map(|c| le32(&raw, 4 * c) & 0x0FFF_FFFF).collect(),
    };
    Ok(Volume {
        kind,
        cluster_size: bps * u64::from(spc),
        clusters: clusters as u32,
        data_start: data_sector * bps,
        fat,
        root_fixed: (!fat32).then(|| {
            (
                (fat_start + u64::from(fats) * u64::from(spf)) * bps,
                u64::from(root_entries),
            )
        }),
        root_cluster,
    })
}

/// Long-name pieces gathered before the short entry they belong to.
fn long_name(parts: &mut Vec<(u8, [u16; 13])>) -> Option<String> {
    if parts.is_empty() {
        return None;
    }
    parts.sort_by_key(|(seq, _)| *seq);
    let units: Vec<u16> = parts
        .iter()
        .flat_map(|(_, u)| u.iter().copied())
        .take_while(|&u| u != 0 && u != 0xFFFF)
        .collect();
    parts.clear();
    Some(String::from_utf16_lossy(&units))
}

fn short_name(e: &[u8]) -> String {
    let mut base: Vec<u8> = e[..8].to_vec();
    if base[0] == 0x05 {
        base[0] = 0xE5;
    }
    let mut base = String::from_utf8_lossy(&base).trim_end().to_string();
    let mut ext = String::from_utf8_lossy(&e[8..11]).trim_end().to_string();
    // Windows NT's case flags (byte 12), which mtools and Linux write for
    // all-lowercase 8.3 names instead of a long name.
    if e[12] & 0x08 != 0 {
        base = base.to_ascii_lowercase();
    }
    if e[12] & 0x10 != 0 {
        ext = ext.to_ascii_lowercase();
    }
    if ext.is_empty() {
        base
    } else {
        format!("{base}.{ext}")
    }
}

/// Checks the FAT volume of a `len`-byte partition read through `r`.
pub fn check<R: Read + Seek>(r: &mut R, len: u64) -> Result<Checked, Corrupt> {
    let v = volume(r, len)?;
    let mut owner = vec![0u32; v.clusters as usize + 2];
    let mut names = vec!["the root directory".to_string()];

    // The root directory's bytes.
    let root: Vec<u8> = match v.root_fixed {
        Some((off, entries)) => {
            let mut buf = vec![0u8; entries as usize * 32];
            read_at(r, off, &mut buf)?;
            buf
        }
        None => {
            let chain = v.chain(v.root_cluster, 0, &names, &mut owner)?;
            v.read_chain(r, &chain)?
        }
    };

    // Every directory, breadth first: its bytes and the path before its
    // entries' names. A directory's chain claims its clusters, so one that
    // holds itself or an ancestor is cross-linked, and the walk ends.
    let mut out = Vec::new();
    let mut dirs = VecDeque::new();
    let mut walk = Walk {
        v: &v,
        names: &mut names,
        owner: &mut owner,
        out: &mut out,
        dirs: &mut dirs,
    };
    walk.dir(&root, "", 0)?;
    while let Some((chain, path, depth)) = walk.dirs.pop_front() {
        let bytes = chain.len() as u64 * walk.v.cluster_size;
        if bytes > MAX_DIR_BYTES {
            return Err(Corrupt::DirTooBig {
                what: path,
                bytes,
                max: MAX_DIR_BYTES,
            });
        }
        let bytes = walk.v.read_chain(r, &chain)?;
        walk.dir(&bytes, &format!("{path}/"), depth)?;
    }
    let free_clusters = v.fat[2..].iter().filter(|&&x| x == 0).count() as u64;
    let mut used: Vec<(u64, u64)> = vec![(0, v.data_start.min(len))];
    for c in 2..v.clusters + 2 {
        if matches!(v.next(c), Next::Free | Next::Bad) {
            continue;
        }
        let start = v.data_start + u64::from(c - 2) * v.cluster_size;
        let end = (start + v.cluster_size).min(len);
        if start >= end {
            break;
        }
        match used.last_mut() {
            Some((_, e)) if *e == start => *e = end,
            _ => used.push((start, end)),
        }
    }
    Ok(Checked {
        kind: v.kind,
        cluster_size: v.cluster_size,
        clusters: v.clusters,
        free_clusters,
        entries: out,
        used,
    })
}

/// A FAT directory holds at most 65,536 entries of 32 bytes (Microsoft's
/// FAT specification, "FAT Directory Structure"): a longer chain is not a
/// directory, and haseed reads no more of it than that.
const MAX_DIR_BYTES: u64 = 65_536 * 32;

/// Boot partitions nest a level or two (Ubuntu's `current/`, `overlays/`);
/// deeper is refused rather than walked, so a crafted chain of nested
/// directories cannot make paths grow without bound.
const MAX_DEPTH: usize = 16;

/// One walk over a volume's directories.
struct Walk<'a> {
    v: &'a Volume,
    names: &'a mut Vec<String>,
    owner: &'a mut [u32],
    out: &'a mut Vec<Entry>,
    /// Subdirectories still to read: chain, path, depth.
    dirs: &'a mut VecDeque<(Vec<u32>, String, usize)>,
}

impl Walk<'_> {
    /// Checks one directory's entries, adds them to `out` with `prefix`
    /// before their names, and queues its subdirectories.
    fn dir(&mut self, bytes: &[u8], prefix: &str, depth: usize) -> Result<(), Corrupt> {
        let v = self.v;
        let mut lfn: Vec<(u8, [u16; 13])> = Vec::new();
        for e in bytes.chunks_exact(32) {
            if e[0] == 0 {
                break;
            }
            if e[0] == 0xE5 {
                lfn.clear();
                continue;
            }
            let attr = e[11];
            if attr & 0x3F == 0x0F {
                let mut u = [0u16; 13];
                for (i, at) in (1..11)
                    .step_by(2)
                    .chain((14..26).step_by(2))
                    .chain((28..32).step_by(2))
                    .enumerate()
                {
                    u[i] = u16::from_le_bytes([e[at], e[at + 1]]);
                }
                lfn.push((e[0] & 0x1F, u));
                continue;
            }
            let long = long_name(&mut lfn);
            if attr & 0x08 != 0 {
                continue; // the volume label
            }
            let short = short_name(e);
            if short == "." || short == ".." {
                continue; // a subdirectory's links to itself and its parent
            }
            let name = long.unwrap_or_else(|| short.clone());
            // What the file is called in messages, and what `find` matches.
            let path = format!("{prefix}{name}");
            let short_path = format!("{prefix}{short}");
            let dir = attr & 0x10 != 0;
            let hi = if v.kind == FatKind::Fat32 {
                le16(e, 20)
            } else {
                0
            };
            let first = (hi << 16) | le16(e, 26);
            let size = u64::from(le32(e, 28));
            let id = self.names.len();
            self.names.push(if dir {
                format!("directory {path}")
            } else {
                path.clone()
            });
            let chain = if first == 0 {
                Vec::new()
            } else {
                v.chain(first, id, self.names, self.owner)?
            };
            let clusters = chain.len() as u64;
            if dir {
                if depth + 1 > MAX_DEPTH {
                    return Err(Corrupt::TooDeep {
                        what: path,
                        depth: depth + 1,
                        max: MAX_DEPTH,
                    });
                }
                self.dirs
                    .push_back((chain.clone(), path.clone(), depth + 1));
            } else {
                if clusters != size.div_ceil(v.cluster_size) {
                    return Err(Corrupt::SizeMismatch {
                        what: path,
                        size,
                        clusters,
                        cluster_size: v.cluster_size,
                    });
                }
                if let Some((_, cap)) = READ_WHOLE
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(&name) || n.eq_ignore_ascii_case(&short))
                {
                    if size > *cap {
                        return Err(Corrupt::TooBig {
                            what: path,
                            size,
                            cap: *cap,
                        });
                    }
                }
            }
            self.out.push(Entry {
                name: path,
                short: short_path,
                size,
                dir,
                clusters,
            });
        }
        Ok(())
    }
}
