//! Reading input files that may be anything: only regular files are read (a FIFO
//! blocks forever, `/dev/zero` never ends), and never more than a cap.

use std::io::Read;
use std::path::Path;

/// Why a file could not be read; `Display` is one line without the path (callers add it).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("not found")]
    NotFound,
    #[error("not a regular file")]
    NotRegular,
    #[error("larger than the {cap} bytes allowed")]
    TooLarge { cap: u64 },
    #[error("{0}")]
    Io(std::io::Error),
}

/// The whole file, when `path` is a regular file (symlinks followed) of at most `cap` bytes.
/// The size is checked before reading and again while reading (the file may grow).
pub fn read_regular(path: &Path, cap: u64) -> Result<Vec<u8>, ReadError> {
    let meta = std::fs::metadata(path).map_err(|e| if e.kind() == std::io::ErrorKind::NotFound { ReadError::NotFound } else { ReadError::Io(e) })?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular);
    }
    if meta.len() > cap {
        return Err(ReadError::TooLarge { cap });
    }
    let file = std::fs::File::open(path).map_err(ReadError::Io)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(cap + 1).read_to_end(&mut bytes).map_err(ReadError::Io)?;
    if bytes.len() as u64 > cap {
        return Err(ReadError::TooLarge { cap });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_folders_and_big_files_are_refused() {
        assert!(matches!(read_regular(Path::new("/dev/zero"), 1 << 20), Err(ReadError::NotRegular)));
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(read_regular(d.path(), 1 << 20), Err(ReadError::NotRegular)));
        let f = d.path().join("f.txt");
        std::fs::write(&f, vec![b'0'; 100]).unwrap();
        assert!(matches!(read_regular(&f, 99), Err(ReadError::TooLarge { cap: 99 })));
        assert_eq!(read_regular(&f, 100).unwrap().len(), 100);
        assert!(matches!(read_regular(&d.path().join("none"), 10), Err(ReadError::NotFound)));
    }
}
