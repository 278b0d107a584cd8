//! Model size figures: convolution GFLOPs, per layer and in all.

use super::graph::{Graph, Op};

/// Conv multiply-accumulates ×2 at a square input of `imgsz`, in GFLOPs.
pub fn gflops(g: &Graph, imgsz: i64) -> f64 {
    layer_gflops(g, imgsz).iter().sum()
}

/// GFLOPs of each top-level layer's convolutions at a square input of `imgsz`.
pub fn layer_gflops(g: &Graph, imgsz: i64) -> Vec<f64> {
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
