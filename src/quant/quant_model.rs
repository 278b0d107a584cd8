//! What quantization works on: a model graph and, once quantizers are placed, their
//! state. The detector above this layer implements it, so calibration, sensitivity
//! and QAT never name the type that loads and saves models (imports run downhill).

use super::state::QuantState;
use crate::model::graph::Graph;
use std::path::Path;

pub trait QuantModel {
    fn graph(&self) -> &Graph;
    fn graph_mut(&mut self) -> &mut Graph;
    /// The quantizer state; `None` before quantizers are placed.
    fn quant(&self) -> Option<&QuantState>;
    /// The graph and the quantizer state at once (QAT binds weights into one while
    /// reading the other).
    fn parts_mut(&mut self) -> (&mut Graph, &mut Option<QuantState>);
    /// Where the model came from, for error messages.
    fn source(&self) -> &Path;
}
