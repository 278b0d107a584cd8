//! The user files yolo-qat reads besides checkpoints, with no libtorch: images
//! (decoded as `cv2.imread` would, with a pixel limit) into the one image type
//! [`RgbImage`], YOLO label files (parsed and checked as upstream `utils/dataloaders.py`
//! `verify_image_label` does) into the one label type pair [`labels::LabelRow`] /
//! [`labels::Label`], and the bounded regular-file reads under both. The fuzz targets
//! call these directly.

pub mod image_io;
pub mod labels;
pub mod regular_file;
pub mod rgb_image;

pub use rgb_image::RgbImage;
