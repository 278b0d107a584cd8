//! yolo-qat: upstream YOLOv9 checkpoints to INT8 TensorRT-ready models.
//! The pipeline reads in layer order (docs/architecture.md): the checkpoint reader (its
//! own crate, no libtorch) → model → quant → detector (a model with its quantizers,
//! loaded and saved) → data → eval → export → plots (pictures from eval's plain data)
//! → cli; `cuda`, `progress` and `util` serve every stage.

pub use yolo_qat_checkpoint as checkpoint;

pub mod cli;
pub mod cuda;
pub mod data;
pub mod detector;
pub mod eval;
pub mod export;
pub mod model;
pub mod plots;
pub mod progress;
pub mod quant;
pub mod util;
