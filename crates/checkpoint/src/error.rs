//! Errors of the checkpoint reader: one line each, naming the file.

use std::fmt;

/// Longest problem text shown; names taken from a damaged file can be huge.
const MAX_MESSAGE_CHARS: usize = 300;

/// What went wrong while reading a checkpoint, and in which file.
///
/// Displays as one line: `FILE: PROBLEM`, e.g. `gelan.pt: truncated zip archive`.
/// Control characters (a zip entry name may hold a newline) are escaped.
#[derive(Debug, thiserror::Error)]
#[error("{}: {}", one_line(.file, usize::MAX), one_line(&.kind.to_string(), MAX_MESSAGE_CHARS))]
pub struct CheckpointError {
    pub file: String,
    pub kind: ErrorKind,
}

impl CheckpointError {
    pub fn new(file: impl fmt::Display, kind: ErrorKind) -> Self {
        Self { file: file.to_string(), kind }
    }
}

/// `text` with control characters escaped, cut to `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The problem itself, without the file name (the parts of the reader that
/// only see bytes return this; the entry points attach the name).
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    #[error("empty file")]
    EmptyFile,
    #[error("not a zip archive (expected a torch.save checkpoint)")]
    NotZip,
    #[error("truncated zip archive")]
    TruncatedZip,
    #[error("corrupt zip archive: {0}")]
    CorruptZip(String),
    #[error("no data.pkl in the archive")]
    NoPickle,
    #[error("more than one data.pkl in the archive ('{0}' and '{1}')")]
    SeveralPickles(String, String),
    #[error("{what} is too large ({size} bytes, limit {limit})")]
    TooLarge { what: String, size: u64, limit: u64 },
    #[error("unsupported byteorder '{0}' (expected 'little' or 'big')")]
    ByteOrder(String),
    #[error("unknown pickle opcode 0x{op:02x} at byte {pos}")]
    UnknownOpcode { op: u8, pos: usize },
    #[error("bad pickle at byte {pos}: {msg}")]
    Pickle { pos: usize, msg: String },
    #[error("pickle {0}")]
    PickleArena(String),
    #[error("tensor storage '{0}' is missing")]
    MissingStorage(String),
    #[error("bad tensor: {0}")]
    Tensor(String),
    #[error("not a YOLO checkpoint (no 'model' entry holding a models.yolo.DetectionModel or SegmentationModel)")]
    NotYolo,
    #[error("bad model: {0}")]
    Model(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_one_line() {
        let e = CheckpointError::new("a.pt", ErrorKind::MissingStorage("x\ny\0".into()));
        assert_eq!(e.to_string(), "a.pt: tensor storage 'x\\ny\\u{0}' is missing");
        let long = CheckpointError::new("a.pt", ErrorKind::MissingStorage("k".repeat(1000)));
        assert!(long.to_string().chars().count() < MAX_MESSAGE_CHARS + 10);
    }
}
