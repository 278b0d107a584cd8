//! yolo-qat: upstream YOLOv9 checkpoints to INT8 TensorRT-ready models.
//! The pipeline reads in folder order: checkpoint → model → quant → data → eval → export → plots
//! (pictures from eval's plain data) → cli; `progress` and `util` serve every stage.

pub mod checkpoint;
pub mod cli;
pub mod cuda;
pub mod data;
pub mod eval;
pub mod export;
pub mod model;
pub mod plots;
pub mod progress;
pub mod quant;
pub mod util;
