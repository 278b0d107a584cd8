//! The part of yolo-qat's `src/util/` the data readers use.

#[path = "../../src/util/regular_file.rs"]
pub mod regular_file;
