//! `yolo-qat info`: what a model is.

use super::Detector;
use crate::model::info::gflops;
use std::fmt::Write;

pub fn summary(model: &Detector, imgsz: i64) -> String {
    let g = &model.graph;
    let mut s = String::new();
    let _ = writeln!(s, "model      {}", model.source.display());
    let _ = writeln!(s, "layers     {} ({} graph nodes, {} convs)", g.layers.len(), g.nodes.len(), g.convs().count());
    let _ = writeln!(s, "parameters {}", g.parameter_count());
    let _ = writeln!(s, "GFLOPs     {:.1} at {imgsz}x{imgsz}", gflops(g, imgsz));
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
