//! Quantization: fake-quant math, calibrators, placement and scale tying, PTQ and QAT.

pub mod assigner;
pub mod box_iou;
pub mod calib_method;
pub mod calibrate;
pub mod ema;
pub mod fake_quant;
pub mod fp_fallback;
pub mod histogram;
pub mod learned_amax;
pub mod mask_loss;
pub mod objective;
pub mod optimizer;
pub mod placement;
pub mod qat;
pub mod quant_model;
pub mod quantizer;
pub mod recipe;
pub mod sensitivity;
pub mod state;
pub mod task_loss;
pub mod train;
pub mod train_state;
pub mod tying;

pub use calib_method::CalibMethod;
pub use quant_model::QuantModel;
pub use quantizer::{QuantTable, Quantizer};
pub use state::QuantState;
