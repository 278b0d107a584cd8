//! The checkpoint reader of yolo-qat, mounted file by file in
//! `checkpoint.rs` (its real `mod.rs` also declares modules that need
//! libtorch).

pub mod checkpoint;
