//! The blocks an ext4 file system uses, read from its own block bitmaps
//! (no mount, no e2fsprogs): what a card needs of a base's root partition
//! when the base has no block map.
//!
//! The on-disk layout, as the kernel documents it
//! (Documentation/filesystems/ext4/super.rst, group_descr.rst,
//! blockgroup.rst in torvalds/linux): the superblock 1024 bytes into the
//! file system; block size `1024 << s_log_block_size`; the group descriptor
//! table in the block after `s_first_data_block`; each descriptor's block
//! bitmap has one bit per block of its group. A group flagged BLOCK_UNINIT
//! has no bitmap on disk: its used blocks are its backup superblock and
//! descriptor tables (if it has them) and any group's bitmaps and inode
//! table placed in it, which this map marks for every group anyway.
//! Layouts it does not read (bigalloc's cluster bitmaps, meta_bg's scattered
//! descriptors, sparse_super2's two backups) are refused with the reason,
//! and the caller maps the whole partition instead.

use std::fs::File;
use std::os::unix::fs::FileExt;

use anyhow::{bail, Context};

const MAGIC: u16 = 0xEF53;
const COMPAT_SPARSE_SUPER2: u32 = 0x200;
const INCOMPAT_META_BG: u32 = 0x10;
const INCOMPAT_64BIT: u32 = 0x80;
const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
const RO_COMPAT_BIGALLOC: u32 = 0x200;
const BG_BLOCK_UNINIT: u16 = 0x2;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Whether group `g` holds a superblock backup (and descriptor tables).
fn has_super(g: u64, sparse: bool) -> bool {
    if g <= 1 || !sparse {
        return true;
    }
    [3u64, 5, 7].iter().any(|&base| {
        let mut p = base;
        while p < g {
            p *= base;
        }
        p == g
    })
}

/// The used blocks of the ext4 file system at byte `offset` of `image`
/// (its partition is `len` bytes), as byte ranges of the image: (offset,
/// length), ascending, merged.
pub fn used_ranges(image: &File, offset: u64, len: u64) -> anyhow::Result<Vec<(u64, u64)>> {
    let mut sb = [0u8; 1024];
    image
        .read_exact_at(&mut sb, offset + 1024)
        .context("reading the ext4 superblock")?;
    if u16_at(&sb, 0x38) != MAGIC {
        bail!("no ext4 superblock (magic 0xEF53) at byte 1024 of the partition");
    }
    let log = u32_at(&sb, 0x18);
    if log > 6 {
        bail!("block size 1024 << {log} is not one ext4 uses");
    }
    let block = 1024u64 << log;
    let (compat, incompat, ro) = (u32_at(&sb, 0x5C), u32_at(&sb, 0x60), u32_at(&sb, 0x64));
    if ro & RO_COMPAT_BIGALLOC != 0 {
        bail!("bigalloc (bitmaps of clusters, not blocks) is not read");
    }
    if incompat & INCOMPAT_META_BG != 0 {
        bail!("meta_bg (descriptor tables spread over the disk) is not read");
    }
    if compat & COMPAT_SPARSE_SUPER2 != 0 {
        bail!("sparse_super2 (two named backup groups) is not read");
    }
    let wide = incompat & INCOMPAT_64BIT != 0;
    let blocks = u64::from(u32_at(&sb, 0x04))
        | if wide {
            u64::from(u32_at(&sb, 0x150)) << 32
        } else {
            0
        };
    let first = u64::from(u32_at(&sb, 0x14));
    let per_group = u64::from(u32_at(&sb, 0x20));
    let inodes_per_group = u64::from(u32_at(&sb, 0x28));
    let inode_size = u64::from(u16_at(&sb, 0x58)).max(128);
    let reserved_gdt = u64::from(u16_at(&sb, 0xCE));
    let desc_size = if wide {
        u64::from(u16_at(&sb, 0xFE))
    } else {
        32
    };
    if per_group == 0 || per_group > block * 8 || !(32..=1024).contains(&desc_size) {
        bail!("the superblock's geometry does not hold together ({per_group} blocks per group, descriptors of {desc_size} bytes)");
    }
    if blocks.saturating_mul(block) > len || blocks <= first {
        bail!(
            "the file system says {blocks} blocks of {block} bytes, the partition holds {len} bytes"
        );
    }
    let groups = (blocks - first).div_ceil(per_group);
    let gdt_blocks = (groups * desc_size).div_ceil(block);
    let mut gdt = vec![0u8; (gdt_blocks * block) as usize];
    image
        .read_exact_at(&mut gdt, offset + (first + 1) * block)
        .context("reading the ext4 group descriptors")?;
    let sparse = ro & RO_COMPAT_SPARSE_SUPER != 0;
    let itable_blocks = (inodes_per_group * inode_size).div_ceil(block);

    let mut used = vec![false; blocks as usize];
    let mut mark = |from: u64, n: u64| {
        for b in from..(from + n).min(blocks) {
            used[b as usize] = true;
        }
    };
    // Everything before the first group (the boot block with 1 KiB blocks).
    mark(0, first);
    let mut bitmap = vec![0u8; block as usize];
    for g in 0..groups {
        let d = &gdt[(g * desc_size) as usize..((g + 1) * desc_size) as usize];
        let hi = |at: usize| {
            if wide && desc_size >= 64 {
                u64::from(u32_at(d, at)) << 32
            } else {
                0
            }
        };
        let block_bitmap = u64::from(u32_at(d, 0x00)) | hi(0x20);
        let inode_bitmap = u64::from(u32_at(d, 0x04)) | hi(0x24);
        let inode_table = u64::from(u32_at(d, 0x08)) | hi(0x28);
        let flags = u16_at(d, 0x12);
        for (what, at, n) in [
            ("block bitmap", block_bitmap, 1),
            ("inode bitmap", inode_bitmap, 1),
            ("inode table", inode_table, itable_blocks),
        ] {
            if at < first || at + n > blocks {
                bail!("group {g}'s {what} at block {at} lies outside the file system");
            }
        }
        // Every group's metadata, wherever flex_bg placed it.
        mark(block_bitmap, 1);
        mark(inode_bitmap, 1);
        mark(inode_table, itable_blocks);
        let start = first + g * per_group;
        let count = per_group.min(blocks - start);
        if has_super(g, sparse) {
            mark(start, 1 + gdt_blocks + reserved_gdt);
        }
        if flags & BG_BLOCK_UNINIT != 0 {
            continue;
        }
        image
            .read_exact_at(&mut bitmap, offset + block_bitmap * block)
            .with_context(|| format!("reading group {g}'s block bitmap"))?;
        for i in 0..count {
            if bitmap[(i / 8) as usize] & (1 << (i % 8)) != 0 {
                mark(start + i, 1);
            }
        }
    }
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    let mut b = 0u64;
    while b < blocks {
        if !used[b as usize] {
            b += 1;
            continue;
        }
        let s = b;
        while b < blocks && used[b as usize] {
            b += 1;
        }
        ranges.push((offset + s * block, (b - s) * block));
    }
    Ok(ranges)
}

#[cfg(test)]
mod tests {
    use super::has_super;

    #[test]
    fn backup_groups_are_0_1_and_powers_of_3_5_7() {
        let with: Vec<u64> = (0..100).filter(|&g| has_super(g, true)).collect();
        assert_eq!(with, [0, 1, 3, 5, 7, 9, 25, 27, 49, 81]);
        assert!((0..10).all(|g| has_super(g, false)));
    }
}
