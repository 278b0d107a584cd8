//! The `torch.save` zip container: `FOLDER/data.pkl`, `FOLDER/byteorder`
//! and the raw storages `FOLDER/data/<key>`, FOLDER being whatever name the
//! writer chose.

use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::path::Path;
use std::rc::Rc;

use zip::result::ZipError;
use zip::{CompressionMethod, ZipArchive};

use super::error::{CheckpointError, ErrorKind};
use super::pickle::{unpickle, StorageSource};
use super::value::Value;

/// Bigger files are refused before being read.
const MAX_FILE_BYTES: u64 = 16 << 30;
const MAX_PICKLE_BYTES: u64 = 1 << 30;
const MAX_STORAGE_BYTES: u64 = 8 << 30;
/// Deflate cannot shrink data by more than about 1032:1; a bigger claimed
/// ratio is a lie or a bomb.
const MAX_DEFLATE_RATIO: u64 = 1100;
/// torch.save stores entries uncompressed; a re-zipped checkpoint may be
/// deflated, but all entries together unpacking to more than this many times
/// the file size (plus some slack) is taken as a zip bomb.
const MAX_TOTAL_UNPACK_FACTOR: u64 = 64;
const UNPACK_SLACK: u64 = 256 << 20;
/// Tensors may together take twice the storage bytes loaded, plus this.
const TENSOR_SLACK: usize = 64 << 20;

/// An opened checkpoint zip, borrowing its bytes.
pub struct Archive<'a> {
    zip: ZipArchive<Cursor<&'a [u8]>>,
    /// The path prefix of every entry: `gelan-c-mini/`, or empty.
    folder: String,
    big_endian: bool,
    input_len: u64,
    unpacked: u64,
    storages: HashMap<String, Rc<[u8]>>,
    storage_bytes: usize,
}

/// Reads and unpickles `path` (for inspection; tensors are materialized).
pub fn load_pickle(path: &Path) -> Result<Value, CheckpointError> {
    let name = path.display();
    let bytes = read_file(path).map_err(|k| CheckpointError::new(&name, k))?;
    load_pickle_bytes(&name.to_string(), &bytes)
}

/// As [`load_pickle`], for a checkpoint already in memory; `name` is used in
/// error messages.
pub fn load_pickle_bytes(name: &str, bytes: &[u8]) -> Result<Value, CheckpointError> {
    Archive::open(bytes).and_then(|mut archive| archive.unpickle()).map_err(|k| CheckpointError::new(name, k))
}

/// The whole file, refusing empty or absurdly large ones.
pub fn read_file(path: &Path) -> Result<Vec<u8>, ErrorKind> {
    let len = std::fs::metadata(path)?.len();
    if len > MAX_FILE_BYTES {
        return Err(too_large("the file", len, MAX_FILE_BYTES));
    }
    let bytes = std::fs::read(path)?;
    if bytes.is_empty() {
        return Err(ErrorKind::EmptyFile);
    }
    Ok(bytes)
}

impl<'a> Archive<'a> {
    pub fn open(bytes: &'a [u8]) -> Result<Self, ErrorKind> {
        if bytes.is_empty() {
            return Err(ErrorKind::EmptyFile);
        }
        if !bytes.starts_with(b"PK") {
            return Err(ErrorKind::NotZip);
        }
        let zip = ZipArchive::new(Cursor::new(bytes)).map_err(|e| open_error(bytes, e))?;
        let folder = find_folder(&zip)?;
        let mut archive = Archive { zip, folder, big_endian: false, input_len: bytes.len() as u64, unpacked: 0, storages: HashMap::new(), storage_bytes: 0 };
        archive.big_endian = archive.read_byte_order()?;
        Ok(archive)
    }

    /// The folder holding `data.pkl`, without its trailing slash.
    pub fn folder(&self) -> &str {
        self.folder.strip_suffix('/').unwrap_or(&self.folder)
    }

    pub fn is_big_endian(&self) -> bool {
        self.big_endian
    }

    /// The raw bytes of `data.pkl`.
    pub fn pickle_bytes(&mut self) -> Result<Vec<u8>, ErrorKind> {
        let name = format!("{}data.pkl", self.folder);
        self.read_entry(&name, MAX_PICKLE_BYTES)?.ok_or(ErrorKind::NoPickle)
    }

    /// Runs `data.pkl`, loading storages from `data/` as tensors need them.
    pub fn unpickle(&mut self) -> Result<Value, ErrorKind> {
        let pickle = self.pickle_bytes()?;
        unpickle(&pickle, self)
    }

    /// `FOLDER/byteorder`: absent in old files, which are little-endian.
    fn read_byte_order(&mut self) -> Result<bool, ErrorKind> {
        let name = format!("{}byteorder", self.folder);
        let Some(raw) = self.read_entry(&name, 64)? else {
            return Ok(false);
        };
        match String::from_utf8_lossy(&raw).trim() {
            "little" => Ok(false),
            "big" => Ok(true),
            other => Err(ErrorKind::ByteOrder(other.chars().take(32).collect())),
        }
    }

    /// One entry's bytes, or None if there is no such entry. Sizes are
    /// checked against `limit`, the compression ratio and the total budget
    /// before reading, and the data actually read must match the header.
    fn read_entry(&mut self, name: &str, limit: u64) -> Result<Option<Vec<u8>>, ErrorKind> {
        let (total, unpacked) = (self.unpack_budget(), self.unpacked);
        let input_len = self.input_len;
        let mut file = match self.zip.by_name(name) {
            Ok(file) => file,
            Err(ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(entry_error(name, e)),
        };
        let size = file.size();
        if size > limit {
            return Err(too_large(&format!("entry '{name}'"), size, limit));
        }
        if size > total.saturating_sub(unpacked) {
            return Err(too_large("the unpacked archive", unpacked.saturating_add(size), total));
        }
        let stored = file.compression() == CompressionMethod::Stored;
        let max_packed = file.compressed_size().saturating_mul(MAX_DEFLATE_RATIO).saturating_add(4096);
        if !stored && size > max_packed {
            return Err(ErrorKind::CorruptZip(format!("entry '{name}' claims an impossible compression ratio")));
        }
        let mut data = Vec::with_capacity(size.min(input_len) as usize);
        (&mut file).take(size.saturating_add(1)).read_to_end(&mut data).map_err(|e| entry_error(name, ZipError::Io(e)))?;
        if data.len() as u64 != size {
            return Err(ErrorKind::CorruptZip(format!("entry '{name}' holds {} bytes, its header says {size}", data.len())));
        }
        self.unpacked += size;
        Ok(Some(data))
    }

    fn unpack_budget(&self) -> u64 {
        self.input_len.saturating_mul(MAX_TOTAL_UNPACK_FACTOR).saturating_add(UNPACK_SLACK)
    }
}

impl StorageSource for Archive<'_> {
    fn storage(&mut self, key: &str) -> Result<Rc<[u8]>, ErrorKind> {
        if let Some(bytes) = self.storages.get(key) {
            return Ok(Rc::clone(bytes));
        }
        let name = format!("{}data/{key}", self.folder);
        let bytes: Rc<[u8]> = self.read_entry(&name, MAX_STORAGE_BYTES)?.ok_or_else(|| ErrorKind::MissingStorage(format!("data/{key}")))?.into();
        self.storage_bytes = self.storage_bytes.saturating_add(bytes.len());
        self.storages.insert(key.to_string(), Rc::clone(&bytes));
        Ok(bytes)
    }

    fn big_endian(&self) -> bool {
        self.big_endian
    }

    fn tensor_budget(&self) -> usize {
        self.storage_bytes.saturating_mul(2).saturating_add(TENSOR_SLACK)
    }
}

/// The prefix of the one `data.pkl` entry (`NAME/`, or empty at the root).
fn find_folder(zip: &ZipArchive<Cursor<&[u8]>>) -> Result<String, ErrorKind> {
    let mut found: Option<&str> = None;
    for name in zip.file_names() {
        let Some(prefix) = name.strip_suffix("data.pkl") else {
            continue;
        };
        if !(prefix.is_empty() || prefix.ends_with('/')) {
            continue;
        }
        if let Some(first) = found {
            return Err(ErrorKind::SeveralPickles(first.to_string(), name.to_string()));
        }
        found = Some(name);
    }
    let name = found.ok_or(ErrorKind::NoPickle)?;
    Ok(name.strip_suffix("data.pkl").unwrap_or_default().to_string())
}

/// A zip that cannot be opened: cut short (no end-of-central-directory
/// record left, or the records run past the end) or otherwise damaged.
fn open_error(bytes: &[u8], e: ZipError) -> ErrorKind {
    // The end record sits in the last 22 bytes plus a comment of < 64 KiB.
    let tail = bytes.len().saturating_sub(22 + 65535);
    let has_end = bytes.get(tail..).unwrap_or_default().windows(4).any(|w| w == b"PK\x05\x06");
    if !has_end || is_eof(&e) {
        ErrorKind::TruncatedZip
    } else {
        ErrorKind::CorruptZip(describe(e))
    }
}

fn entry_error(name: &str, e: ZipError) -> ErrorKind {
    if is_eof(&e) {
        ErrorKind::TruncatedZip
    } else {
        ErrorKind::CorruptZip(format!("entry '{name}': {}", describe(e)))
    }
}

fn is_eof(e: &ZipError) -> bool {
    matches!(e, ZipError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof)
}

/// The zip crate shows I/O errors as a bare "i/o error"; say what it was.
fn describe(e: ZipError) -> String {
    match e {
        ZipError::Io(io) => io.to_string(),
        e => e.to_string(),
    }
}

fn too_large(what: &str, size: u64, limit: u64) -> ErrorKind {
    ErrorKind::TooLarge { what: what.to_string(), size, limit }
}
