//! `yolo-qat info`: what a model is.

use super::detector::Detector;
use super::graph::Op;
use std::fmt::Write;

/// Conv multiply-accumulates ×2 at a square input of `imgsz`, in GFLOPs.
pub fn gflops(model: &Detector, imgsz: i64) -> f64 {
    layer_gflops(model, imgsz).iter().sum()
}

/// GFLOPs of each top-level layer's convolutions at a square input of `imgsz`.
pub fn layer_gflops(model: &Detector, imgsz: i64) -> Vec<f64> {
    let g = &model.graph;
    let mut flops = vec![0.0; g.layers.len()];
    for n in &g.nodes {
        if let Op::Conv(c) = &n.op {
            let s = g.value_stride[n.outputs[0]].max(1);
            let hw = ((imgsz + s - 1) / s).pow(2) as f64;
            let w = c.weight.size();
            flops[n.layer] += 2.0 * (w[0] * w[1] * w[2] * w[3]) as f64 * hw / 1e9;
        }
    }
    flops
}

pub fn summary(model: &Detector, imgsz: i64) -> String {
    let g = &model.graph;
    let mut s = String::new();
    let _ = writeln!(s, "model      {}", model.source.display());
    let _ = writeln!(s, "layers     {} ({} graph nodes, {} convs)", g.layers.len(), g.nodes.len(), g.convs().count());
    let _ = writeln!(s, "parameters {}", g.parameter_count());
    let _ = writeln!(s, "GFLOPs     {:.1} at {imgsz}x{imgsz}", gflops(model, imgsz));
    let _ = writeln!(s, "classes    {} ({})", g.nc, model.names.join(", "));
    let _ = writeln!(s, "strides    {:?}", g.strides);
    let _ = writeln!(s, "activation {}", model.cfg.activation.name());
    let head = if g.is_dual() {
        "dual (DualDDetect, auxiliary branch)".to_string()
    } else if g.is_segmentation() {
        format!("segmentation (DSegment, {} mask coefficients)", g.nm)
    } else {
        "single (DDetect)".to_string()
    };
    let _ = writeln!(s, "head       {head}");
    match &model.quant {
        Some(q) => {
            let _ = write!(s, "quantized  {} quantizers, {} tie groups, calibration {}", q.table.len(), q.groups.len(), q.calib_method);
            if !q.skip_layers.is_empty() {
                let _ = write!(s, ", layers kept in floating point: {:?}", q.skip_layers);
            }
        }
        None => {
            let _ = write!(s, "quantized  no");
        }
    }
    s
}
