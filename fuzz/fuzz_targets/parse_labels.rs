//! Arbitrary text as a YOLO label file: rows, polygons, upstream's checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yolo_qat_readers::labels::parse_labels;

const NC: usize = 80;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(file) = parse_labels(text, NC) {
        for r in &file.rows {
            assert!(r.class < NC, "class {} kept", r.class);
            assert!(r.xywhn.iter().all(|v| (0.0..=1.0).contains(v)), "coordinates {:?} kept", r.xywhn);
        }
    }
});
