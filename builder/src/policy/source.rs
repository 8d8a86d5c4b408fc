//! Reading a plugin file: a regular file, under the size cap, hashed as it is
//! read. It must never block on a FIFO or a device, nor read more than
//! [`MAX_COMPONENT_BYTES`] + 1 bytes of anything.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::compile::{too_large, MAX_COMPONENT_BYTES};

/// A component's bytes and their sha256 (lowercase hex).
pub struct Source {
    pub bytes: Vec<u8>,
    pub digest: String,
}

/// Reads the component at `path` (see the module's comment). The error
/// finishes "plugin X: ..." and says what to do.
pub fn read_component(path: &Path) -> Result<Source, String> {
    read_capped(path, MAX_COMPONENT_BYTES)
}

pub(crate) fn read_capped(path: &Path, cap: usize) -> Result<Source, String> {
    // O_NONBLOCK: opening a FIFO with no writer would otherwise wait forever.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot stat {}: {e}", path.display()))?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(format!(
            "{} is {what}; a plugin must be a regular .wasm file",
            path.display()
        ));
    }
    if meta.len() > cap as u64 {
        return Err(format!("{}: {}", path.display(), too_large(meta.len())));
    }
    // The file may grow after the stat: the read stops one byte past the cap.
    let mut reader = file.take(cap as u64 + 1);
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    let mut hasher = Sha256::new();
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        };
        if bytes.len() + n > cap {
            return Err(format!(
                "{}: {}",
                path.display(),
                too_large((bytes.len() + n) as u64)
            ));
        }
        hasher.update(&chunk[..n]);
        bytes.extend_from_slice(&chunk[..n]);
    }
    Ok(Source {
        bytes,
        digest: hex::encode(hasher.finalize()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_hashes_a_regular_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("p.wasm");
        std::fs::write(&file, b"\0asm plugin").expect("write");
        let source = read_capped(&file, 100).expect("read");
        assert_eq!(source.bytes, b"\0asm plugin");
        assert_eq!(source.digest, super::super::sha256_hex(b"\0asm plugin"));
    }

    #[test]
    fn refuses_a_file_over_the_cap_before_reading_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("big.wasm");
        std::fs::write(&file, vec![0u8; 101]).expect("write");
        let err = read_capped(&file, 100).err().expect("refused");
        assert!(err.contains("101 bytes"), "{err}");
        // Exactly the cap is fine.
        std::fs::write(&file, vec![0u8; 100]).expect("write");
        assert_eq!(read_capped(&file, 100).expect("read").bytes.len(), 100);
    }

    #[test]
    fn refuses_endless_devices_fifos_and_directories_without_blocking() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let fifo = tmp.path().join("fifo.wasm");
        let c = std::ffi::CString::new(fifo.to_str().expect("utf-8")).expect("cstring");
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        for (path, what) in [
            (Path::new("/dev/zero"), "a device"),
            (fifo.as_path(), "a FIFO"),
            (tmp.path(), "a directory"),
        ] {
            let err = read_component(path).err().expect("refused");
            assert!(err.contains(what), "{}: {err}", path.display());
        }
    }

    #[test]
    fn a_file_that_grows_past_the_cap_while_read_is_refused() {
        // /proc/self/status has size 0 in its stat yet holds more than 10
        // bytes: the stat's size cannot be trusted, the read is capped.
        let err = read_capped(Path::new("/proc/self/status"), 10)
            .err()
            .expect("refused");
        assert!(err.contains("at most"), "{err}");
    }
}
