//! Validation data: data yaml, YOLO labels, image decoding, cv2-compatible
//! resizing, letterboxing and the rectangular-batch validation set.

pub use yolo_qat_readers::{image_io, labels};

pub mod augment;
pub mod config;
pub mod hyp;
pub mod letterbox;
pub mod mosaic;
pub mod polygon_mask;
pub mod resize;
pub mod train_loader;
pub mod val_set;
