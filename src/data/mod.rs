//! Data: the data yaml, YOLO labels, image decoding, and the one image stack that both
//! the validation set ([`val_set`], upstream `LoadImagesAndLabels(rect=True)` as val.py
//! builds it) and the augmented training loader ([`train_loader`], upstream
//! `LoadImagesAndLabels(augment=True)`) are built from:
//!
//! * one image type, [`RgbImage`] (8-bit RGB, HWC), which the decoder returns;
//! * one label type pair: [`labels::LabelRow`] (class, normalized centre and size, as
//!   label files store it) and [`labels::Label`] (class, pixel corners), converted into
//!   each other by upstream's `xywhn2xyxy` / `xyxy2xywhn`;
//! * one cv2-exact resize ([`resize`], with upstream `load_image`'s rule) and one
//!   letterbox ([`letterbox`]);
//! * the training augmentations, one file per concern: [`rng`] (random numbers),
//!   [`hsv`] (`augment_hsv`), [`warp`] (`cv2.warpAffine`/`warpPerspective`),
//!   [`perspective`] (`random_perspective`, `box_candidates`), [`mosaic`]
//!   (`load_mosaic`), [`mixup`], [`flip`].
//!
//! Where a module claims bit-exactness with OpenCV, its doc names the test that checks
//! it: `tests/opencv_vectors.rs` compares with reference outputs of OpenCV itself, kept
//! in `tests/data/opencv/` and made by `scripts/make_opencv_vectors.py`.

pub use yolo_qat_readers::{image_io, labels, RgbImage};

pub mod config;
pub mod flip;
pub mod hsv;
pub mod hyp;
pub mod letterbox;
pub mod mixup;
pub mod mosaic;
pub mod perspective;
pub mod polygon_mask;
pub mod resize;
pub mod rng;
pub mod segments;
pub mod train_loader;
pub mod val_set;
pub mod warp;

#[cfg(test)]
mod test_images;

/// Upstream's padding grey (letterbox borders, the mosaic canvas, the warp border).
pub const PAD_VALUE: u8 = 114;
