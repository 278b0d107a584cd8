//! Pictures of a run, drawn in pure Rust (plotters on an RGB buffer, an embedded font):
//! what upstream YOLOv9's val.py, utils/plots.py and utils/metrics.py draw, fed by the
//! plain numbers `eval` and `quant` compute.

pub mod annotate;
pub mod canvas;
pub mod colors;
pub mod confusion;
pub mod curves;
pub mod eval;
pub mod font;
pub mod mosaic;
pub mod predictions;
pub mod results;
pub mod sensitivity;
