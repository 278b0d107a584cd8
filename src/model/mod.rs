//! The YOLOv9 model: yaml config, blocks, detect head, fused graph, forward pass.

pub mod blocks;
pub mod builder;
pub mod config;
pub mod detect;
pub mod forward;
pub mod graph;
pub mod info;
pub mod parse;
pub mod reparam;
pub mod segment;
pub mod weights;

pub use config::{Activation, ModelConfig};
pub use graph::Graph;
