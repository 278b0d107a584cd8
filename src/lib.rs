//! yolo-qat: upstream YOLOv9 checkpoints to INT8 TensorRT-ready models.
//! The pipeline reads in folder order: checkpoint → model → quant → data → eval → export.

pub mod checkpoint;
pub mod cli;
pub mod cuda;
pub mod data;
pub mod eval;
pub mod export;
pub mod model;
pub mod quant;
pub mod util;
