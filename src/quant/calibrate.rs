//! PTQ (pytorch-quantization's calibrate-then-load_calib_amax flow): place quantizers, tie junctions, keep skipped layers in
//! floating point, then calibrate activations on training batches.

use super::calib_method::CalibMethod;
use super::placement::place;
use super::quantizer::Collect;
use super::state::{set_layer_enabled, QuantState};
use super::tying::{tie, TieScope};
use super::QuantModel;
use crate::model::graph::Op;
use crate::progress::Progress;
use anyhow::{bail, Result};
use tch::Tensor;

/// How quantizers are placed and calibrated.
#[derive(Clone, Debug)]
pub struct PrepareOptions {
    pub skip_layers: Vec<usize>,
    pub method: CalibMethod,
    pub ties: TieScope,
    /// The DFL conv reads softmax probabilities, whose range is [0, 1] by construction:
    /// with this set (the default) its input quantizer takes amax 1 instead of a calibrated
    /// one. The reference calibrates it; its MSE amax (0.88 on the shapes model) clips
    /// every confident bin and shrinks boxes: PTQ AP 0.6578 vs 0.6619 (docs/results.md).
    pub dfl_unit_range: bool,
}

impl PrepareOptions {
    pub fn new(method: CalibMethod) -> PrepareOptions {
        PrepareOptions { skip_layers: Vec::new(), method, ties: TieScope::All, dfl_unit_range: true }
    }
}

/// Adds quantizers to an FP model (uncalibrated), every junction tied; returns the tie log lines.
pub fn prepare(model: &mut impl QuantModel, skip_layers: &[usize], method: CalibMethod) -> Result<Vec<String>> {
    prepare_with(model, &PrepareOptions { skip_layers: skip_layers.to_vec(), ..PrepareOptions::new(method) })
}

/// `prepare` with every option.
pub fn prepare_with(model: &mut impl QuantModel, o: &PrepareOptions) -> Result<Vec<String>> {
    let (skip_layers, method) = (o.skip_layers.as_slice(), o.method);
    if model.quant().is_some() {
        bail!("{}: the model is already quantized", model.source().display());
    }
    let (graph, quant) = model.parts_mut();
    let n = graph.layers.len();
    if let Some(&bad) = skip_layers.iter().find(|&&l| l >= n) {
        bail!("--skip-layers: model.{bad} does not exist (the model has layers 0..{})", n - 1);
    }
    let mut table = place(graph);
    let groups = tie(graph, &mut table, o.ties);
    if o.dfl_unit_range {
        for n in &graph.nodes {
            if let (Op::Detect(_), Some(slot)) = (&n.op, n.quant.internal) {
                table.quantizers[slot.quant].known_amax = Some(1.0);
            }
        }
    }
    for &l in skip_layers {
        set_layer_enabled(graph, l, false);
    }
    let lines = groups.iter().map(|g| g.log_line()).collect();
    *quant = Some(QuantState { table, groups, calib_method: method.name().to_string(), skip_layers: skip_layers.to_vec() });
    Ok(lines)
}

/// Runs FP batches through the model collecting histograms, then sets amax.
/// Returns the number of activation quantizers that saw no data.
pub fn calibrate(model: &mut impl QuantModel, batches: impl Iterator<Item = Tensor>, method: CalibMethod) -> Result<usize> {
    let (graph, quant) = model.parts_mut();
    let Some(q) = quant.as_mut() else { bail!("calibrate: the model has no quantizers") };
    let graph = &*graph;
    let out = graph.output;
    let mut seen = 0;
    let mut bar = Progress::new("calibrate", batches.size_hint().1.unwrap_or(0));
    for x in batches {
        tch::no_grad(|| graph.run(&x, &mut Collect(&mut q.table), &[out]));
        seen += 1;
        bar.inc(1);
    }
    bar.finish();
    if seen == 0 {
        bail!("calibrate: no calibration batches (is the training set empty?)");
    }
    Ok(q.table.finish_calibration(method))
}
