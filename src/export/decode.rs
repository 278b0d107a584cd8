//! The Detect decode in ONNX, op for op as `model::forward::decode`: flatten and
//! concatenate the level maps, split box/class channels, DFL (softmax over the
//! reg_max bins, optional Q/DQ on its input, 1x1 conv with the 0..reg_max
//! weight), dist2bbox in centre-size times stride, sigmoid scores.
//! Anchors and strides are constants for static sizes; with symbolic sizes they
//! are computed in the graph from each map's Shape (Range → Expand → Concat).

use super::lower::tensor_f32;
use super::onnx_builder::{Attr, Elem, OnnxBuilder};
use super::qdq::QdqEmitter;
use crate::model::forward::anchors;
use crate::model::graph::{Detect, Node};
use anyhow::Result;
use tch::{Device, Kind};

pub fn decode(
    g: &mut OnnxBuilder,
    node: &Node,
    d: &Detect,
    maps: &[String],
    level_sizes: Option<&[(i64, i64)]>,
    qdq: &mut QdqEmitter,
    out: String,
) -> Result<String> {
    let p = node.name.as_str();
    let no = 4 * d.reg_max + d.nc;
    let flat_shape = g.const_i64(&[0, no, -1]);
    let flat: Vec<String> = maps.iter().enumerate().map(|(i, m)| g.node("Reshape", &format!("{p}/flatten{i}"), &[m, &flat_shape], vec![])).collect();
    let cat = concat(g, &format!("{p}/cat"), &flat, 2);
    let split = g.const_i64(&[4 * d.reg_max, d.nc]);
    let parts = g.node_n("Split", &format!("{p}/split"), &[&cat, &split], 2, vec![("axis", Attr::Int(1))]);

    // DFL: (B, 4*reg_max, A) → (B, 4, reg_max, A) → (B, reg_max, 4, A), softmax over the bins.
    let bins_shape = g.const_i64(&[0, 4, d.reg_max, -1]);
    let bins = g.node("Reshape", &format!("{p}/bins"), &[&parts[0], &bins_shape], vec![]);
    let bins = g.node("Transpose", &format!("{p}/transpose"), &[&bins], vec![("perm", Attr::Ints(vec![0, 2, 1, 3]))]);
    let prob = g.node("Softmax", &format!("{p}/softmax"), &[&bins], vec![("axis", Attr::Int(1))]);
    let quantized = qdq.activation(g, &prob, node.quant.internal, &format!("{p}/conv_input"))?;
    let values = tensor_f32(&d.dfl_weight)?;
    let mut w = g.init_f32(&format!("{p}.conv.weight"), &d.dfl_weight.size(), &values);
    if quantized != prob {
        w = qdq.exact_weight(g, &w, &values, d.dfl_weight.size()[0], &format!("{p}/conv")).unwrap_or(w);
    }
    let prob = quantized;
    let dist = g.node(
        "Conv",
        &format!("{p}/conv"),
        &[&prob, &w],
        vec![("kernel_shape", Attr::Ints(vec![1, 1])), ("strides", Attr::Ints(vec![1, 1])), ("pads", Attr::Ints(vec![0; 4])), ("group", Attr::Int(1))],
    );
    let dist_shape = g.const_i64(&[0, 4, -1]);
    let dist = g.node("Reshape", &format!("{p}/dist"), &[&dist, &dist_shape], vec![]);

    // dist2bbox, centre-size, times the stride.
    let (points, strides) = match level_sizes {
        Some(sizes) => static_anchors(g, p, sizes, &d.strides)?,
        None => dynamic_anchors(g, p, maps, &d.strides),
    };
    let halves = g.const_i64(&[2, 2]);
    let lt_rb = g.node_n("Split", &format!("{p}/lt_rb"), &[&dist, &halves], 2, vec![("axis", Attr::Int(1))]);
    let x1y1 = g.node("Sub", &format!("{p}/x1y1"), &[&points, &lt_rb[0]], vec![]);
    let x2y2 = g.node("Add", &format!("{p}/x2y2"), &[&points, &lt_rb[1]], vec![]);
    let sum = g.node("Add", &format!("{p}/centre_sum"), &[&x1y1, &x2y2], vec![]);
    let two = g.const_f32(&[], 2.0);
    let centre = g.node("Div", &format!("{p}/centre"), &[&sum, &two], vec![]);
    let wh = g.node("Sub", &format!("{p}/wh"), &[&x2y2, &x1y1], vec![]);
    let cwh = g.node("Concat", &format!("{p}/cwh"), &[&centre, &wh], vec![("axis", Attr::Int(1))]);
    let dbox = g.node("Mul", &format!("{p}/dbox"), &[&cwh, &strides], vec![]);
    let cls = g.node("Sigmoid", &format!("{p}/scores"), &[&parts[1]], vec![]);
    Ok(g.node_named("Concat", "", &format!("{p}/output"), &[&dbox, &cls], vec![out], vec![("axis", Attr::Int(1))]).remove(0))
}

fn concat(g: &mut OnnxBuilder, name: &str, xs: &[String], axis: i64) -> String {
    if xs.len() == 1 {
        return xs[0].clone();
    }
    let refs: Vec<&str> = xs.iter().map(String::as_str).collect();
    g.node("Concat", name, &refs, vec![("axis", Attr::Int(axis))])
}

/// Anchor points (2, A) and strides (1, A) as initializers, computed as the forward pass does.
fn static_anchors(g: &mut OnnxBuilder, p: &str, sizes: &[(i64, i64)], strides: &[f64]) -> Result<(String, String)> {
    let (pts, st) = anchors(sizes, strides, Kind::Float, Device::Cpu);
    let a = pts.size()[1];
    let points = g.init_f32(&format!("{p}.anchor_points"), &[2, a], &tensor_f32(&pts)?);
    let strides = g.init_f32(&format!("{p}.anchor_strides"), &[1, a], &tensor_f32(&st)?);
    Ok((points, strides))
}

/// Anchor points and strides from the maps' runtime shapes.
fn dynamic_anchors(g: &mut OnnxBuilder, p: &str, maps: &[String], strides: &[f64]) -> (String, String) {
    let (two, three, four) = (g.const_i64(&[2]), g.const_i64(&[3]), g.const_i64(&[4]));
    let (zero, one) = (g.scalar_i64(0), g.scalar_i64(1));
    let (ax0, ax1) = (g.const_i64(&[0]), g.const_i64(&[1]));
    let row = g.const_i64(&[1, -1]);
    let half = g.const_f32(&[], 0.5);
    let one_1d = g.const_i64(&[1]);
    let mut points = Vec::new();
    let mut level_strides = Vec::new();
    for (i, (m, &s)) in maps.iter().zip(strides).enumerate() {
        let l = format!("{p}/anchors{i}");
        let shape = g.node("Shape", &format!("{l}/shape"), &[m], vec![]);
        let hw = g.node("Slice", &format!("{l}/hw"), &[&shape, &two, &four], vec![]);
        let h1 = g.node("Slice", &format!("{l}/h"), &[&shape, &two, &three], vec![]);
        let w1 = g.node("Slice", &format!("{l}/w"), &[&shape, &three, &four], vec![]);
        let h = g.node("Squeeze", &format!("{l}/h0"), &[&h1, &ax0], vec![]);
        let w = g.node("Squeeze", &format!("{l}/w0"), &[&w1, &ax0], vec![]);
        let coord = |g: &mut OnnxBuilder, n: &str, axis: &str, tag: &str| {
            let r = g.node("Range", &format!("{l}/{tag}_range"), &[&zero, n, &one], vec![]);
            let r = g.node("Cast", &format!("{l}/{tag}_float"), &[&r], vec![("to", Attr::Int(Elem::F32.code() as i64))]);
            let r = g.node("Add", &format!("{l}/{tag}_centre"), &[&r, &half], vec![]);
            let r = g.node("Unsqueeze", &format!("{l}/{tag}_unsqueeze"), &[&r, axis], vec![]);
            let r = g.node("Expand", &format!("{l}/{tag}_grid"), &[&r, &hw], vec![]);
            g.node("Reshape", &format!("{l}/{tag}_flat"), &[&r, &row], vec![])
        };
        let gx = coord(g, &w, &ax0, "x");
        let gy = coord(g, &h, &ax1, "y");
        points.push(g.node("Concat", &format!("{l}/points"), &[&gx, &gy], vec![("axis", Attr::Int(0))]));
        let n = g.node("Mul", &format!("{l}/count"), &[&h1, &w1], vec![]);
        let st_shape = g.node("Concat", &format!("{l}/stride_shape"), &[&one_1d, &n], vec![("axis", Attr::Int(0))]);
        let sv = g.const_f32(&[1, 1], s as f32);
        level_strides.push(g.node("Expand", &format!("{l}/strides"), &[&sv, &st_shape], vec![]));
    }
    let pts = concat(g, &format!("{p}/anchor_points"), &points, 1);
    let st = concat(g, &format!("{p}/anchor_strides"), &level_strides, 1);
    (pts, st)
}
