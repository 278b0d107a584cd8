//! The checkpoint reader and the image and label readers of yolo-qat, mounted file
//! by file in `checkpoint.rs` and `data.rs` (their real `mod.rs` files also declare
//! modules that need libtorch).

pub mod checkpoint;
pub mod data;
pub mod util;
