//! yolo-qat's image and label readers (`src/data/image_io.rs`, `src/data/labels.rs`),
//! which need no libtorch.

#[path = "../../src/data/image_io.rs"]
pub mod image_io;
#[path = "../../src/data/labels.rs"]
pub mod labels;
