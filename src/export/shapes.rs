//! Static shape inference over the model graph: the spatial size of every value
//! for a fixed input size, so that a static export writes constants (anchors,
//! resize sizes) instead of Shape/Gather chains, and so that a bad `--imgsz`
//! fails here with a clear message instead of inside an ONNX runtime.

use crate::model::graph::{Graph, Op};
use anyhow::{bail, Result};

/// (H, W) of every value computed for an `h`×`w` input; `None` for values the
/// export does not need or that have no spatial size (the decoded output).
pub fn spatial_sizes(graph: &Graph, needed: &[bool], h: i64, w: i64) -> Result<Vec<Option<(i64, i64)>>> {
    let mut size: Vec<Option<(i64, i64)>> = vec![None; graph.num_values];
    size[graph.input] = Some((h, w));
    for (i, n) in graph.nodes.iter().enumerate() {
        if !needed[i] {
            continue;
        }
        let get = |k: usize| size[n.inputs[k]].ok_or_else(|| anyhow::anyhow!("{}: input {k} has no known size", n.name));
        let out = match &n.op {
            Op::Conv(c) => {
                let (ih, iw) = get(0)?;
                let (kh, kw) = (c.weight.size()[2], c.weight.size()[3]);
                let f = |x: i64, k: i64| (x + 2 * c.padding - c.dilation * (k - 1) - 1).div_euclid(c.stride) + 1;
                Some((f(ih, kh), f(iw, kw)))
            }
            Op::MaxPool { kernel, stride, padding } | Op::AvgPool { kernel, stride, padding } => {
                let (ih, iw) = get(0)?;
                let f = |x: i64| (x + 2 * padding - kernel).div_euclid(*stride) + 1;
                Some((f(ih), f(iw)))
            }
            Op::Upsample { scale } => get(0).map(|(a, b)| Some((a * scale, b * scale)))?,
            Op::ResizeLike => Some(get(1)?),
            Op::Concat | Op::Add => {
                let first = get(0)?;
                for k in 1..n.inputs.len() {
                    let other = get(k)?;
                    if other != first {
                        bail!(
                            "input size {h}x{w} does not fit the model: `{}` ({}) joins {}x{} with {}x{}; use a multiple of the largest stride {}",
                            n.name,
                            n.op.kind(),
                            first.0,
                            first.1,
                            other.0,
                            other.1,
                            graph.strides.iter().cloned().fold(1.0, f64::max)
                        );
                    }
                }
                Some(first)
            }
            Op::Split { .. } => Some(get(0)?),
            Op::Detect(_) | Op::AppendCoeffs => None,
        };
        if let Some((oh, ow)) = out {
            if oh <= 0 || ow <= 0 {
                bail!("input size {h}x{w} is too small for the model: `{}` would output {oh}x{ow}", n.name);
            }
        }
        for &o in &n.outputs {
            size[o] = out;
        }
    }
    Ok(size)
}

/// Which nodes the exported outputs depend on (the eval output, the main branch of a
/// dual head only, and a segmentation head's prototypes).
pub fn needed_nodes(graph: &Graph) -> Vec<bool> {
    graph.needed_nodes(&export_values(graph))
}

/// The model values that become ONNX outputs: `output0`, and `output1` (prototypes) when there are any.
pub fn export_values(graph: &Graph) -> Vec<usize> {
    std::iter::once(graph.output).chain(graph.proto).collect()
}
