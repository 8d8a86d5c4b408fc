//! bmaptool's block map (`.bmap`, format 2.0): which blocks of an image
//! hold data, with a sha256 per range and one over the file itself.
//!
//! The format, as bmap-tools writes and reads it (intel/bmap-tools 7106093,
//! bmaptools/BmapCreate.py and BmapCopy.py): an XML document `<bmap
//! version="2.0">` with `ImageSize` (bytes), `BlockSize`, `BlocksCount` (the
//! image size rounded up to blocks), `MappedBlocksCount`, `ChecksumType`,
//! `BmapFileChecksum` (the checksum of the file with this very value written
//! as all `0`s) and a `BlockMap` of `<Range chksum="...">first-last</Range>`
//! (or a single block), inclusive block numbers in ascending order; a range's
//! checksum covers its bytes up to the image's end. Raspberry Pi OS publishes
//! one beside its images, made by `bmaptool create` after `zerofree`
//! (RPi-Distro/pi-gen 314262cb, export-image/05-finalise/01-run.sh).
//!
//! haseed reads a base's block map (checked, its ranges verified against the
//! decompressed base) and writes one beside each image it makes: the base's
//! ranges plus the boot partition it edits, or every block when the base
//! has none.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use sha2::Digest;

/// The block size haseed uses when the base has no block map: bmaptool's
/// own on every Linux file system it maps (the page size).
pub const DEFAULT_BLOCK: u64 = 4096;

/// A parsed, checked block map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bmap {
    pub image_size: u64,
    pub block_size: u64,
    /// Inclusive block ranges, ascending, disjoint; with their sha256 when
    /// the file has one.
    pub ranges: Vec<Range>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub first: u64,
    pub last: u64,
    pub sha256: Option<String>,
}

impl Bmap {
    pub fn blocks(&self) -> u64 {
        self.image_size.div_ceil(self.block_size)
    }

    /// Bytes the ranges cover (the last block only up to the image's end).
    pub fn mapped_bytes(&self) -> u64 {
        self.ranges
            .iter()
            .map(|r| self.byte_range(r.first, r.last).1)
            .sum()
    }

    /// (offset, length) of blocks `first..=last`, cut at the image's end.
    pub fn byte_range(&self, first: u64, last: u64) -> (u64, u64) {
        let start = first * self.block_size;
        let end = ((last + 1) * self.block_size).min(self.image_size);
        (start, end.saturating_sub(start))
    }
}

/// The block map bmaptool would find for `image`: `IMAGE.bmap`, then the
/// same with one extension after another taken off (`x.img.xz` ->
/// `x.img.xz.bmap`, `x.img.bmap`, `x.bmap`), as its `find_and_open_bmap`
/// does (bmaptools/CLI.py).
pub fn find_for(image: &Path) -> Option<PathBuf> {
    let mut stem = image.to_path_buf();
    loop {
        let mut candidate = stem.clone().into_os_string();
        candidate.push(".bmap");
        let candidate = PathBuf::from(candidate);
        if candidate.is_file() {
            return Some(candidate);
        }
        stem.extension()?;
        stem.set_extension("");
    }
}

/// Where the block map of an image written to `output` goes: beside it,
/// named after the raw image (`lb1.img.xz` -> `lb1.img.bmap`), which
/// bmaptool finds for either.
pub fn path_for_output(output: &Path) -> PathBuf {
    let name = output.to_string_lossy();
    let raw = [".xz", ".gz"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext))
        .unwrap_or(&name);
    PathBuf::from(format!("{raw}.bmap"))
}

/// Reads and checks `path`: well-formed, a 2.x format with sha256, its own
/// checksum right, its counts consistent and its ranges in order.
/// The base's block map: the one given (`--bmap`), else the one beside the base as bmaptool
/// finds it ([`find_for`]); read and checked. None when there is neither.
pub fn for_base(base: &Path, given: Option<&Path>) -> anyhow::Result<Option<(Bmap, PathBuf)>> {
    match given.map(Path::to_path_buf).or_else(|| find_for(base)) {
        Some(path) => Ok(Some((read(&path)?, path))),
        None => Ok(None),
    }
}

pub fn read(path: &Path) -> anyhow::Result<Bmap> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the block map {}", path.display()))?;
    parse(&text).with_context(|| format!("block map {}", path.display()))
}

fn parse(text: &str) -> anyhow::Result<Bmap> {
    let doc = roxmltree::Document::parse(text).context("not well-formed XML")?;
    let root = doc.root_element();
    if root.tag_name().name() != "bmap" {
        bail!(
            "the root element is <{}>, not <bmap>",
            root.tag_name().name()
        );
    }
    let version = root.attribute("version").unwrap_or("");
    if version.split('.').next() != Some("2") {
        bail!("format version {version:?}: haseed reads bmaptool's format 2.x (bmap-tools 3.1 and later)");
    }
    let child = |name: &str| {
        root.children()
            .find(|n| n.has_tag_name(name))
            .and_then(|n| n.text())
            .map(str::trim)
            .ok_or_else(|| anyhow::anyhow!("no <{name}>"))
    };
    let number = |name: &str| -> anyhow::Result<u64> {
        let t = child(name)?;
        t.parse()
            .with_context(|| format!("<{name}> {t:?} is not a number"))
    };
    // The file first: a changed file is reported as changed, whatever
    // else the change broke.
    let kind = child("ChecksumType")?;
    if kind != "sha256" {
        bail!("<ChecksumType> {kind}: haseed checks sha256 block maps (bmaptool's default)");
    }
    let own = child("BmapFileChecksum")?;
    if own.len() != 64 || !own.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("<BmapFileChecksum> {own:?} is not a sha256");
    }
    let zeroed = text.replacen(own, &"0".repeat(64), 1);
    let actual = hex::encode(sha2::Sha256::digest(zeroed.as_bytes()));
    if actual != own {
        bail!("the file's own checksum is wrong (it says {own}, its content gives {actual}): the file was changed or damaged");
    }
    let image_size = number("ImageSize")?;
    let block_size = number("BlockSize")?;
    if block_size == 0 || block_size % 512 != 0 {
        bail!("<BlockSize> {block_size} is not a positive multiple of 512");
    }
    let blocks = number("BlocksCount")?;
    if blocks != image_size.div_ceil(block_size) {
        bail!("<BlocksCount> {blocks} does not match <ImageSize> {image_size} in blocks of {block_size}");
    }
    let map = root
        .children()
        .find(|n| n.has_tag_name("BlockMap"))
        .ok_or_else(|| anyhow::anyhow!("no <BlockMap>"))?;
    let mut ranges = Vec::new();
    for r in map.children().filter(|n| n.has_tag_name("Range")) {
        let t = r.text().map(str::trim).unwrap_or("");
        let (a, b) = t.split_once('-').unwrap_or((t, t));
        let parse = |s: &str| {
            s.trim()
                .parse::<u64>()
                .with_context(|| format!("<Range> {t:?} is not a block range"))
        };
        let (first, last) = (parse(a)?, parse(b)?);
        if first > last || last >= blocks {
            bail!("<Range> {t} is outside the image's {blocks} blocks or backwards");
        }
        if let Some(prev) = ranges.last().map(|p: &Range| p.last) {
            if first <= prev {
                bail!(
                    "<Range> {t} overlaps or precedes the range before it (ending at block {prev})"
                );
            }
        }
        let sha256 = r.attribute("chksum").map(str::to_ascii_lowercase);
        if let Some(c) = &sha256 {
            if c.len() != 64 || !c.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!("<Range> {t}: chksum {c:?} is not a sha256");
            }
        }
        ranges.push(Range {
            first,
            last,
            sha256,
        });
    }
    let mapped: u64 = ranges.iter().map(|r| r.last - r.first + 1).sum();
    let said = number("MappedBlocksCount")?;
    if mapped != said {
        bail!("<MappedBlocksCount> {said} but the ranges hold {mapped} blocks");
    }
    Ok(Bmap {
        image_size,
        block_size,
        ranges,
    })
}

/// Checks every range's sha256 against `image` (the decompressed base).
pub fn verify(bmap: &Bmap, image: &File, len: u64) -> anyhow::Result<()> {
    if len != bmap.image_size {
        bail!(
            "it describes an image of {} bytes, the base is {len} bytes: not this base's block map",
            bmap.image_size
        );
    }
    for r in &bmap.ranges {
        let Some(want) = &r.sha256 else { continue };
        let got = hash_range(image, bmap.byte_range(r.first, r.last))?;
        if &got != want {
            bail!(
                "blocks {}-{}: sha256 {got}, the block map says {want}: not this base's block map, or the base is damaged",
                r.first,
                r.last
            );
        }
    }
    Ok(())
}

/// A base's block map checked while cards are written (issue 23 item 3: its
/// checksums "verified while writing: a mismatch stops that card"): one
/// thread ([`Checker::run`]) hashes the base's ranges in order and moves a
/// mark up; each card's writer waits ([`Checker::wait`]) until the mark has
/// passed what it is about to write, so no byte of a range whose checksum is
/// wrong reaches a card. Hashing (about 1 GB/s) outruns any card, so the
/// writers hardly ever wait.
pub struct Checker {
    /// Everything below the mark is verified or unmapped; the failure, once
    /// one is found.
    state: std::sync::Mutex<(u64, Option<String>)>,
    moved: std::sync::Condvar,
}

impl Default for Checker {
    fn default() -> Self {
        Checker {
            state: std::sync::Mutex::new((0, None)),
            moved: std::sync::Condvar::new(),
        }
    }
}

impl Checker {
    /// A checker with nothing to check: every wait returns at once.
    pub fn passed() -> Checker {
        let c = Checker::default();
        c.set(u64::MAX, None);
        c
    }

    fn set(&self, mark: u64, failure: Option<String>) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.0 = s.0.max(mark);
        if s.1.is_none() {
            s.1 = failure;
        }
        self.moved.notify_all();
    }

    /// Hashes `image`'s ranges (the decompressed base, `bmap`'s image) and
    /// moves the mark past each that matches; stops at the first that does
    /// not, or at an interrupt, saying so to every waiting writer.
    pub fn run(&self, bmap: &Bmap, image: &File) {
        for (i, r) in bmap.ranges.iter().enumerate() {
            let (start, len) = bmap.byte_range(r.first, r.last);
            if let Some(want) = &r.sha256 {
                if crate::interrupt::check().is_err() {
                    return self.set(0, Some("interrupted".into()));
                }
                match hash_range(image, (start, len)) {
                    Ok(got) if &got == want => {}
                    Ok(got) => {
                        return self.set(
                            0,
                            Some(format!(
                                "blocks {}-{}: sha256 {got}, the block map says {want}: not this base's block map, or the base is damaged",
                                r.first, r.last
                            )),
                        )
                    }
                    Err(e) => return self.set(0, Some(format!("reading blocks {}-{}: {e:#}", r.first, r.last))),
                }
            }
            let next = bmap
                .ranges
                .get(i + 1)
                .map_or(u64::MAX, |n| n.first * bmap.block_size);
            self.set(next, None);
        }
        self.set(u64::MAX, None);
    }

    /// Waits until every byte below `end` is checked; the failure, if the
    /// check failed.
    pub fn wait(&self, end: u64) -> Result<(), String> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(f) = &s.1 {
                return Err(f.clone());
            }
            if s.0 >= end {
                return Ok(());
            }
            s = self.moved.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }
}

fn hash_range(image: &File, (start, len): (u64, u64)) -> anyhow::Result<String> {
    let mut hash = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        image.read_exact_at(&mut buf[..n], start + done)?;
        hash.update(&buf[..n]);
        done += n as u64;
    }
    Ok(hex::encode(hash.finalize()))
}

/// The block map of an image of `len` bytes: blocks of `block_size` that
/// hold any byte of the `mapped` byte ranges ((offset, length); `None`:
/// every block) or of the ranges haseed wrote (`extra`), with checksums read
/// from `image`.
pub fn for_image(
    image: &File,
    len: u64,
    block_size: u64,
    mapped: Option<&[(u64, u64)]>,
    extra: &[(u64, u64)],
) -> anyhow::Result<Bmap> {
    let mut map = Bmap {
        image_size: len,
        block_size,
        ranges: Vec::new(),
    };
    for (first, last) in block_spans(len, block_size, mapped, extra) {
        let sha256 = Some(hash_range(image, map.byte_range(first, last))?);
        map.ranges.push(Range {
            first,
            last,
            sha256,
        });
    }
    Ok(map)
}

/// The blocks [`for_image`] maps, as inclusive (first, last) spans,
/// ascending, without reading the image: what `flash` writes.
pub fn block_spans(
    len: u64,
    block_size: u64,
    mapped: Option<&[(u64, u64)]>,
    extra: &[(u64, u64)],
) -> Vec<(u64, u64)> {
    let blocks = len.div_ceil(block_size);
    let every = [(0, len)];
    let spans: Vec<(u64, u64)> = mapped
        .unwrap_or(&every)
        .iter()
        .chain(extra)
        .filter(|&&(start, n)| n > 0 && start < len)
        .map(|&(start, n)| {
            let last = (start + n).div_ceil(block_size).min(blocks) - 1;
            (start / block_size, last)
        })
        .collect();
    // Inclusive block spans as half-open ones, merged, and back.
    merge(spans.into_iter().map(|(a, b)| (a, b + 1)).collect())
        .into_iter()
        .map(|(a, e)| (a, e - 1))
        .collect()
}

/// Half-open spans `(start, end)` sorted and merged where they touch or
/// overlap.
pub fn merge(mut spans: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    spans.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (a, b) in spans {
        match merged.last_mut() {
            Some((_, end)) if a <= *end => *end = (*end).max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}

impl Bmap {
    /// The ranges as bytes: (offset, length).
    pub fn byte_ranges(&self) -> Vec<(u64, u64)> {
        self.ranges
            .iter()
            .map(|r| self.byte_range(r.first, r.last))
            .collect()
    }
}

/// The XML text, in bmaptool's own layout, with its file checksum.
pub fn render(map: &Bmap) -> String {
    let mapped: u64 = map.ranges.iter().map(|r| r.last - r.first + 1).sum();
    let mut body = String::new();
    for r in &map.ranges {
        let chk = r
            .sha256
            .as_ref()
            .map(|c| format!(" chksum=\"{c}\""))
            .unwrap_or_default();
        if r.first == r.last {
            body.push_str(&format!("        <Range{chk}> {} </Range>\n", r.first));
        } else {
            body.push_str(&format!(
                "        <Range{chk}> {}-{} </Range>\n",
                r.first, r.last
            ));
        }
    }
    let percent = if map.blocks() == 0 {
        0.0
    } else {
        mapped as f64 * 100.0 / map.blocks() as f64
    };
    let text = format!(
        "<?xml version=\"1.0\" ?>\n\
         <!-- Written by haseed: the blocks of this image that hold data (the base's\n     \
         block map plus the boot partition haseed edited, or every block when the\n     \
         base had none). bmaptool copy writes only these and checks their sha256. -->\n\
         <bmap version=\"2.0\">\n    \
         <!-- Image size in bytes: {} -->\n    \
         <ImageSize> {} </ImageSize>\n    \
         <!-- Size of a block in bytes -->\n    \
         <BlockSize> {} </BlockSize>\n    \
         <!-- Count of blocks in the image file -->\n    \
         <BlocksCount> {} </BlocksCount>\n    \
         <!-- Count of mapped blocks: {} or {percent:.1}% -->\n    \
         <MappedBlocksCount> {mapped} </MappedBlocksCount>\n    \
         <!-- Type of checksum used in this file -->\n    \
         <ChecksumType> sha256 </ChecksumType>\n    \
         <!-- The checksum of this bmap file. When it is calculated, the value of\n         \
         the checksum has to be zero (all ASCII \"0\" symbols).  -->\n    \
         <BmapFileChecksum> {} </BmapFileChecksum>\n    \
         <BlockMap>\n{body}    </BlockMap>\n</bmap>\n",
        super::progress::human(map.image_size),
        map.image_size,
        map.block_size,
        map.blocks(),
        super::progress::human(mapped * map.block_size),
        "0".repeat(64),
    );
    let sum = hex::encode(sha2::Sha256::digest(text.as_bytes()));
    text.replacen(&"0".repeat(64), &sum, 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn image(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().expect("tempfile");
        f.write_all(bytes).expect("write");
        f
    }

    #[test]
    fn a_rendered_map_reads_back_and_verifies() {
        // 5 blocks and a half: the last range stops at the image's end.
        let mut bytes = vec![0u8; 5 * 4096 + 100];
        bytes[10] = 1;
        bytes[3 * 4096 + 7] = 2;
        bytes[5 * 4096 + 50] = 3;
        let f = image(&bytes);
        let base = Bmap {
            image_size: bytes.len() as u64,
            block_size: 4096,
            ranges: vec![
                Range {
                    first: 0,
                    last: 0,
                    sha256: None,
                },
                Range {
                    first: 5,
                    last: 5,
                    sha256: None,
                },
            ],
        };
        // The extra byte range 3*4096+7.. joins block 3.
        let map = for_image(
            &f,
            bytes.len() as u64,
            4096,
            Some(&base.byte_ranges()),
            &[(3 * 4096 + 7, 1)],
        )
        .expect("map");
        let spans: Vec<(u64, u64)> = map.ranges.iter().map(|r| (r.first, r.last)).collect();
        assert_eq!(spans, [(0, 0), (3, 3), (5, 5)]);
        assert_eq!(map.mapped_bytes(), 2 * 4096 + 100);
        let text = render(&map);
        let back = parse(&text).expect("parses");
        assert_eq!(back, map);
        verify(&back, &f, bytes.len() as u64).expect("verifies");
        // Without a base map: every block, in one range.
        let all = for_image(&f, bytes.len() as u64, 4096, None, &[]).expect("map");
        assert_eq!(all.ranges.len(), 1);
        assert_eq!((all.ranges[0].first, all.ranges[0].last), (0, 5));
    }

    #[test]
    fn a_changed_map_or_base_is_refused() {
        let bytes = vec![7u8; 3 * 4096];
        let f = image(&bytes);
        let map = for_image(&f, bytes.len() as u64, 4096, None, &[]).expect("map");
        let text = render(&map);
        // Any edit breaks the file's own checksum.
        let edited = text.replace(
            "<BlocksCount> 3 </BlocksCount>",
            "<BlocksCount> 4 </BlocksCount>",
        );
        let e = parse(&edited).expect_err("edited").to_string();
        assert!(e.contains("the file's own checksum is wrong"), "{e}");
        // A base that is not the one the map describes.
        let other = image(&vec![8u8; 3 * 4096]);
        let e = verify(&map, &other, 3 * 4096)
            .expect_err("other base")
            .to_string();
        assert!(e.contains("blocks 0-2: sha256"), "{e}");
        let e = verify(&map, &f, 2 * 4096).expect_err("shorter").to_string();
        assert!(e.contains("describes an image of 12288 bytes"), "{e}");
        // Structure: ranges out of order, outside the image, counts off.
        for (from, to, want) in [
            (
                "<BlockSize> 4096 </BlockSize>",
                "<BlockSize> 100 </BlockSize>",
                "multiple of 512",
            ),
            ("> 0-2 </Range>", "> 0-3 </Range>", "outside the image"),
            (
                "<MappedBlocksCount> 3 </MappedBlocksCount>",
                "<MappedBlocksCount> 2 </MappedBlocksCount>",
                "ranges hold 3 blocks",
            ),
            (
                "<ChecksumType> sha256 </ChecksumType>",
                "<ChecksumType> sha1 </ChecksumType>",
                "sha256 block maps",
            ),
            ("version=\"2.0\"", "version=\"1.3\"", "format 2.x"),
        ] {
            assert!(text.contains(from), "{from}");
            let broken = text.replace(from, to);
            // Re-sign it, so the structural check is what refuses it.
            let own = broken
                .split("<BmapFileChecksum> ")
                .nth(1)
                .and_then(|s| s.split(' ').next())
                .expect("checksum")
                .to_string();
            let zeroed = broken.replacen(&own, &"0".repeat(64), 1);
            let resigned = zeroed.replacen(
                &"0".repeat(64),
                &hex::encode(sha2::Sha256::digest(zeroed.as_bytes())),
                1,
            );
            let e = format!("{:#}", parse(&resigned).expect_err(want));
            assert!(e.contains(want), "{want}: {e}");
        }
    }

    #[test]
    fn the_map_is_found_as_bmaptool_finds_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let img = dir.path().join("base.img.xz");
        assert_eq!(find_for(&img), None);
        std::fs::write(dir.path().join("base.img.bmap"), "x").expect("write");
        assert_eq!(find_for(&img), Some(dir.path().join("base.img.bmap")));
        std::fs::write(dir.path().join("base.img.xz.bmap"), "x").expect("write");
        assert_eq!(find_for(&img), Some(dir.path().join("base.img.xz.bmap")));
        assert_eq!(
            path_for_output(Path::new("out/lb1.img.xz")),
            Path::new("out/lb1.img.bmap")
        );
        assert_eq!(
            path_for_output(Path::new("out/lb1.img")),
            Path::new("out/lb1.img.bmap")
        );
    }
}
