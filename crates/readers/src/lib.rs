//! The user files yolo-qat reads besides checkpoints, with no libtorch: images
//! (decoded as `cv2.imread` would, with a pixel limit), YOLO label files (parsed and
//! checked as upstream `utils/dataloaders.py` `verify_image_label` does), and the
//! bounded regular-file reads under both. The fuzz targets call these directly.

pub mod image_io;
pub mod labels;
pub mod regular_file;
