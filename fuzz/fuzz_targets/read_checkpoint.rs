//! Arbitrary bytes as a whole checkpoint file: zip, pickle, tensors, model.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yolo_qat_checkpoint::upstream::read_upstream_bytes;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = read_upstream_bytes("fuzz.pt", data) {
        let msg = e.to_string();
        assert!(msg.starts_with("fuzz.pt: ") && !msg.contains('\n'), "{msg:?}");
    }
});
