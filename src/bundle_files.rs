//! Reading a bundle's files: only regular files inside the bundle directory,
//! of bounded size, opened so that nothing can block or run forever.
//!
//! A bundle is read once, at context creation, and every byte ONNX Runtime
//! later sees comes from the buffers read here (models are handed over from
//! memory, external data as in-memory files), so the SHA-256 checked against
//! the manifest covers exactly what runs. The limits are those of
//! `docs/CONTRACTS.md` ("File rules").

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Largest `manifest.json` accepted.
pub(crate) const MANIFEST_MAX_BYTES: u64 = 1 << 20;
/// Largest ONNX file accepted.
pub(crate) const MODEL_MAX_BYTES: u64 = 256 << 20;
/// Largest external-data file accepted.
pub(crate) const DATA_MAX_BYTES: u64 = 2 << 30;

/// A bundle directory, resolved once to its canonical path.
#[derive(Debug, Clone)]
pub(crate) struct BundleDir {
    /// The directory as the caller named it (for messages and accessors).
    pub given: PathBuf,
    /// Its canonical path; every file must resolve to a path below it.
    root: PathBuf,
}

/// The bytes of one bundle file and their SHA-256 (lowercase hex).
#[derive(Debug, Clone)]
pub(crate) struct FileBytes {
    /// The contents.
    pub bytes: Arc<[u8]>,
    /// SHA-256 of `bytes`.
    pub sha256: String,
}

/// Lowercase hex SHA-256 of a byte string.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl BundleDir {
    /// Resolves `dir`, which must be a directory.
    pub(crate) fn open(dir: &Path) -> Result<BundleDir> {
        let shown = dir.display().to_string();
        let fail = |why: String| {
            Error::model(
                &shown,
                "(directory)",
                format!("cannot open the bundle directory (holding manifest.json): {why}"),
            )
        };
        let root = std::fs::canonicalize(dir).map_err(|e| fail(e.to_string()))?;
        let meta = std::fs::metadata(&root).map_err(|e| fail(e.to_string()))?;
        if !meta.is_dir() {
            return Err(fail("not a directory".into()));
        }
        Ok(BundleDir {
            given: dir.to_path_buf(),
            root,
        })
    }

    /// Reads the bundle file `name` (a plain relative name, already checked
    /// by the manifest parser) whole, refusing anything that is not a
    /// regular file inside the bundle directory once symlinks are resolved,
    /// or that is larger than `limit` bytes. `field` names the manifest
    /// field that listed the file.
    pub(crate) fn read(&self, name: &str, field: &str, limit: u64) -> Result<FileBytes> {
        let err = |msg: String| Error::model(name, field, msg);
        let joined = self.given.join(name);
        let real = std::fs::canonicalize(&joined)
            .map_err(|e| err(format!("cannot read `{}`: {e}", joined.display())))?;
        if !real.starts_with(&self.root) || real == self.root {
            return Err(err(format!(
                "resolves to `{}`, which is outside the bundle directory `{}`",
                real.display(),
                self.root.display()
            )));
        }
        // O_NONBLOCK: opening a FIFO must not wait for a writer. It changes
        // nothing for the regular files that pass the check below.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(&real)
            .map_err(|e| err(format!("cannot open `{}`: {e}", real.display())))?;
        // The type and size of what was opened, not of the path: the file
        // cannot be swapped between this check and the read.
        let meta = file
            .metadata()
            .map_err(|e| err(format!("cannot stat `{}`: {e}", real.display())))?;
        if !meta.is_file() {
            return Err(err(format!(
                "`{}` is not a regular file ({})",
                real.display(),
                describe_type(&meta)
            )));
        }
        if meta.len() > limit {
            return Err(err(format!(
                "is {} bytes, over the limit of {limit} bytes for this kind of file",
                meta.len()
            )));
        }
        let bytes = read_bounded(file, meta.len(), limit)
            .map_err(|e| err(format!("cannot read `{}`: {e}", real.display())))?;
        if bytes.len() as u64 != meta.len() {
            return Err(err(format!(
                "changed size while being read ({} bytes, then {})",
                meta.len(),
                bytes.len()
            )));
        }
        let sha256 = sha256_hex(&bytes);
        Ok(FileBytes {
            bytes: Arc::from(bytes),
            sha256,
        })
    }

    /// [`BundleDir::read`], then the SHA-256 compared with `expected`
    /// (the manifest's value, hex, any case).
    pub(crate) fn read_verified(
        &self,
        name: &str,
        field: &str,
        limit: u64,
        expected: &str,
    ) -> Result<FileBytes> {
        let f = self.read(name, field, limit)?;
        if !f.sha256.eq_ignore_ascii_case(expected) {
            return Err(Error::model(
                name,
                field,
                format!(
                    "SHA-256 mismatch: manifest says {expected}, file has {}",
                    f.sha256
                ),
            ));
        }
        Ok(f)
    }
}

/// Reads at most `limit + 1` bytes, so a file that grows cannot make the
/// read unbounded; the caller compares the length with the stat.
fn read_bounded(file: File, expected: u64, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn describe_type(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "av1part-files-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn regular_file_is_read_and_hashed() {
        let d = tmpdir("ok");
        std::fs::write(d.join("a.onnx"), b"abc").unwrap();
        let b = BundleDir::open(&d).unwrap();
        let f = b.read("a.onnx", "f", 10).unwrap();
        assert_eq!(&*f.bytes, b"abc");
        assert_eq!(
            f.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let e = b
            .read_verified("a.onnx", "f", 10, &"0".repeat(64))
            .unwrap_err();
        assert!(e.to_string().contains("SHA-256 mismatch"), "{e}");
        let e = b.read("a.onnx", "f", 2).unwrap_err().to_string();
        assert!(e.contains("over the limit"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn special_files_and_outside_links_are_refused() {
        let d = tmpdir("special");
        let outside = tmpdir("outside");
        std::fs::write(outside.join("w.data"), b"x").unwrap();
        std::os::unix::fs::symlink(outside.join("w.data"), d.join("out.data")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", d.join("zero.onnx")).unwrap();
        std::fs::create_dir(d.join("sub.onnx")).unwrap();
        std::fs::write(d.join("real.onnx"), b"y").unwrap();
        std::os::unix::fs::symlink("real.onnx", d.join("inside.onnx")).unwrap();
        let fifo = std::ffi::CString::new(d.join("fifo.json").to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let b = BundleDir::open(&d).unwrap();
        for (name, needle) in [
            ("out.data", "outside the bundle"),
            ("zero.onnx", "outside the bundle"),
            ("sub.onnx", "a directory"),
            ("fifo.json", "a FIFO"),
            ("missing.onnx", "cannot read"),
        ] {
            let e = b.read(name, "f", 1 << 20).unwrap_err().to_string();
            assert!(e.contains(name) && e.contains(needle), "{name}: {e}");
        }
        // A symlink that stays inside the bundle is fine.
        assert_eq!(&*b.read("inside.onnx", "f", 10).unwrap().bytes, b"y");
        let _ = std::fs::remove_dir_all(&d);
        let _ = std::fs::remove_dir_all(&outside);
    }
}
