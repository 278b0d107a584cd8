//! Validation data: data yaml, YOLO labels, image decoding, cv2-compatible
//! resizing, letterboxing and the rectangular-batch validation set.

pub mod config;
pub mod image_io;
pub mod labels;
pub mod letterbox;
pub mod resize;
pub mod val_set;
pub mod augment;
pub mod hyp;
pub mod mosaic;
pub mod train_loader;
