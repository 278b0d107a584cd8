//! Arbitrary bytes as `data.pkl`, with every storage present and filled, so
//! that mutations reach the interpreter and tensor code instead of stopping
//! at a zip checksum.
#![no_main]

use std::rc::Rc;

use libfuzzer_sys::fuzz_target;
use yolo_qat_checkpoint::error::ErrorKind;
use yolo_qat_checkpoint::pickle::{unpickle, StorageSource};
use yolo_qat_checkpoint::upstream::from_checkpoint;

/// Any key names a 4 KiB storage of a repeating byte pattern.
struct Filled;

impl StorageSource for Filled {
    fn storage(&mut self, key: &str) -> Result<Rc<[u8]>, ErrorKind> {
        if key.len() > 16 {
            return Err(ErrorKind::MissingStorage(format!("data/{key}")));
        }
        Ok((0..4096u32).map(|i| i as u8).collect())
    }
    fn big_endian(&self) -> bool {
        false
    }
    fn tensor_budget(&self) -> usize {
        64 << 20
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = unpickle(data, &mut Filled) {
        let _ = from_checkpoint(&value);
    }
});
