//! Reading a base image: raw, xz or gzip (recognised by magic bytes, not by
//! name), decompressed as a stream so memory stays bounded whatever its size.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use anyhow::Context;

use super::progress::Progress;

/// What a base image file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Raw,
    Xz,
    Gzip,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Xz => "xz",
            Format::Gzip => "gzip",
        }
    }
}

const XZ_MAGIC: &[u8] = &[0xFD, b'7', b'z', b'X', b'Z', 0x00];
const GZIP_MAGIC: &[u8] = &[0x1F, 0x8B];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xB5, 0x2F, 0xFD];
const BZIP2_MAGIC: &[u8] = b"BZh";

/// Recognises a file by its first bytes.
pub fn sniff(head: &[u8]) -> Result<Format, String> {
    if head.starts_with(XZ_MAGIC) {
        Ok(Format::Xz)
    } else if head.starts_with(GZIP_MAGIC) {
        Ok(Format::Gzip)
    } else if head.starts_with(ZSTD_MAGIC) {
        Err("is zstd-compressed, which haseed does not read: decompress it first (zstd -d)".into())
    } else if head.starts_with(BZIP2_MAGIC) {
        Err("is bzip2-compressed, which haseed does not read: decompress it first (bunzip2)".into())
    } else if head.starts_with(b"PK\x03\x04") {
        Err(
            "is a zip archive: unzip it first (Ubuntu and Raspberry Pi images come as .img.xz)"
                .into(),
        )
    } else {
        Ok(Format::Raw)
    }
}

/// A decompressing reader over a base image, with progress counted on the
/// compressed bytes.
pub struct Source {
    pub format: Format,
    pub reader: Box<dyn Read + Send>,
}

/// Counts the bytes read from the file into the progress display.
struct Counted<R> {
    inner: R,
    progress: Progress,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

/// Opens a base image for streaming.
pub fn open(path: &Path, progress: Progress) -> anyhow::Result<Source> {
    let mut file =
        File::open(path).with_context(|| format!("opening base image {}", path.display()))?;
    let len = file.metadata()?.len();
    let mut head = [0u8; 8];
    let n = read_full(&mut file, &mut head)?;
    let format =
        sniff(&head[..n]).map_err(|why| anyhow::anyhow!("base image {} {why}", path.display()))?;
    drop(file);
    let file = File::open(path)?;
    progress.set_total(len);
    let counted = BufReader::with_capacity(
        1 << 20,
        Counted {
            inner: file,
            progress,
        },
    );
    let reader: Box<dyn Read + Send> = match format {
        Format::Raw => Box::new(counted),
        Format::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(counted)),
        Format::Xz => {
            // liblzma's multi-threaded decoder (xz 5.4+) with a memory cap: it
            // falls back to one thread rather than exceed it.
            let stream = liblzma::stream::MtStreamBuilder::new()
                .threads(std::thread::available_parallelism().map_or(1, |n| n.get().min(4)) as u32)
                .memlimit_threading(128 << 20)
                .memlimit_stop(1 << 30)
                .decoder()
                .context("starting the xz decoder")?;
            Box::new(liblzma::bufread::XzDecoder::new_stream(counted, stream))
        }
    };
    Ok(Source { format, reader })
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
pub fn read_full<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes_decide_not_names() {
        assert_eq!(sniff(b"\xFD7zXZ\x00\x00\x04"), Ok(Format::Xz));
        assert_eq!(sniff(b"\x1F\x8B\x08\x00"), Ok(Format::Gzip));
        assert_eq!(sniff(&[0u8; 8]), Ok(Format::Raw));
        assert_eq!(sniff(b""), Ok(Format::Raw));
        assert!(sniff(b"\x28\xB5\x2F\xFD").unwrap_err().contains("zstd"));
        assert!(sniff(b"PK\x03\x04").unwrap_err().contains("zip"));
    }
}
