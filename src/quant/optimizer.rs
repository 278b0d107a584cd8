//! The student's parameters as one flat fp32 buffer (the Adam state lives beside
//! it), so that weight fake-quantization, the gradient and the optimizer step are
//! a handful of kernels per step instead of a few per tensor.

use crate::model::graph::{Graph, Op};
use tch::{Kind, Tensor};

/// One conv parameter in the flat buffer (spans lie back to back, in order).
#[derive(Debug, Clone)]
pub struct Span {
    pub node: usize,
    pub is_bias: bool,
    pub size: Vec<i64>,
}

impl Span {
    fn numel(&self) -> i64 {
        self.size.iter().product()
    }
}

pub struct FlatParams {
    /// fp32 master parameters; the leaf that receives gradients.
    pub flat: Tensor,
    pub spans: Vec<Span>,
}

impl FlatParams {
    /// Copies every conv weight and bias of `graph` into one trainable buffer.
    pub fn new(graph: &Graph) -> FlatParams {
        let mut spans = Vec::new();
        let mut parts = Vec::new();
        for (i, n) in graph.nodes.iter().enumerate() {
            if let Op::Conv(c) = &n.op {
                for (t, is_bias) in std::iter::once((&c.weight, false)).chain(c.bias.iter().map(|b| (b, true))) {
                    let span = Span { node: i, is_bias, size: t.size() };
                    parts.push(t.detach().to_kind(Kind::Float).reshape([-1]));
                    spans.push(span);
                }
            }
        }
        let flat = Tensor::cat(&parts, 0).set_requires_grad(true);
        FlatParams { flat, spans }
    }

    /// Points the graph's conv parameters at views of `buf` (a flat tensor laid out like `flat`).
    /// One split, not a `narrow` per span: the backward of a split is one concatenation,
    /// while each narrow's backward would write a zero-filled gradient the size of `buf`.
    pub fn bind(&self, graph: &mut Graph, buf: &Tensor) {
        let sizes: Vec<i64> = self.spans.iter().map(Span::numel).collect();
        for (s, part) in self.spans.iter().zip(buf.split_with_sizes(sizes.as_slice(), 0)) {
            if let Op::Conv(c) = &mut graph.nodes[s.node].op {
                let view = part.view(s.size.as_slice());
                if s.is_bias {
                    c.bias = Some(view);
                } else {
                    c.weight = view;
                }
            }
        }
    }

    /// Binds plain fp32 views of the master weights (for evaluation and saving).
    pub fn bind_master(&self, graph: &mut Graph) {
        self.bind(graph, &self.flat.detach());
    }
}

/// Adam (no weight decay) on a flat buffer, skipping steps with inf/NaN gradients.
/// Everything stays on the device (the step count too): a step never waits for the
/// GPU, so the host can queue the next batch while this one runs.
pub struct Adam {
    m: Tensor,
    v: Tensor,
    /// Steps taken (skipped ones not counted), a float scalar on the device.
    steps: Tensor,
    betas: (f64, f64),
    eps: f64,
}

impl Adam {
    pub fn new(like: &Tensor) -> Adam {
        let z = like.detach().zeros_like();
        let steps = Tensor::zeros([], (Kind::Float, like.device()));
        Adam { m: z.copy(), v: z, steps, betas: (0.9, 0.999), eps: 1e-8 }
    }

    /// One step from `param`'s gradient times `inv_scale` (1 / loss scale, a device
    /// scalar). Returns `found_inf` (a device scalar, 1 where some gradient was inf/NaN
    /// and nothing was updated). Clears the gradient.
    pub fn step(&mut self, param: &mut Tensor, lr: &Tensor, inv_scale: &Tensor) -> Tensor {
        let grad = param.grad();
        if !grad.defined() {
            return Tensor::zeros([], (Kind::Float, param.device()));
        }
        let (b1, b2) = self.betas;
        tch::no_grad(|| {
            let g = &grad * inv_scale;
            let good = g.isfinite().all();
            let bad = good.logical_not();
            let _ = self.steps.g_add_(&good.to_kind(Kind::Float));
            let m = &self.m * b1 + &g * (1.0 - b1);
            let v = &self.v * b2 + g.square() * (1.0 - b2);
            // Bias corrections from the on-device step count (inf/NaN only where masked out).
            let bc1 = Tensor::pow_scalar(b1, &self.steps).neg() + 1.0;
            let bc2 = Tensor::pow_scalar(b2, &self.steps).neg() + 1.0;
            let update = &m / (v.sqrt() / bc2.sqrt() + self.eps) * (bc1.reciprocal() * lr);
            let _ = param.g_sub_(&update.where_scalarother(&good, 0.0));
            self.m.copy_(&self.m.where_self(&bad, &m));
            self.v.copy_(&self.v.where_self(&bad, &v));
            param.zero_grad();
            bad.to_kind(Kind::Float)
        })
    }

    /// The tensors a step updates in place (for saving and restoring around a warm-up).
    pub fn state(&self) -> Vec<Tensor> {
        vec![self.m.shallow_clone(), self.v.shallow_clone(), self.steps.shallow_clone()]
    }

    /// Steps taken so far (reads the device: for reports, not for the training loop).
    pub fn steps_taken(&self) -> i64 {
        self.steps.double_value(&[]) as i64
    }
}

/// Dynamic loss scale on the device: halves on overflow, doubles after 2000 clean steps
/// (ATen's `_amp_update_scale_`, as PyTorch's GradScaler).
pub struct LossScale {
    pub scale: Tensor,
    growth: Tensor,
}

impl LossScale {
    pub fn new(device: tch::Device) -> LossScale {
        LossScale { scale: Tensor::from(65536f32).to_device(device), growth: Tensor::from(0i32).to_device(device) }
    }

    pub fn update(&mut self, found_inf: &Tensor) {
        let _ = self.scale.internal_amp_update_scale_(&self.growth, found_inf, 2.0, 0.5, 2000);
    }

    pub fn state(&self) -> Vec<Tensor> {
        vec![self.scale.shallow_clone(), self.growth.shallow_clone()]
    }

    /// The current scale (reads the device).
    pub fn value(&self) -> f64 {
        self.scale.double_value(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adam_matches_the_textbook_and_skips_nonfinite_gradients() {
        let mut p = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
        let mut adam = Adam::new(&p);
        let one = Tensor::from(1f32);
        let lr = Tensor::from(0.1f32);
        // Gradient (0.5, -0.5): the first Adam step moves each parameter by lr against its sign.
        (&p * Tensor::from_slice(&[0.5f32, -0.5])).sum(Kind::Float).backward();
        let bad = adam.step(&mut p, &lr, &one);
        assert_eq!(bad.double_value(&[]), 0.0);
        let got: Vec<f32> = Vec::try_from(p.detach()).unwrap();
        assert!((got[0] - 0.9).abs() < 1e-5 && (got[1] + 1.9).abs() < 1e-5, "{got:?}");
        // An inf gradient: reported, nothing changes, the step count stays.
        (&p * Tensor::from_slice(&[f32::INFINITY, 1.0])).sum(Kind::Float).backward();
        let bad = adam.step(&mut p, &lr, &one);
        assert_eq!(bad.double_value(&[]), 1.0);
        let after: Vec<f32> = Vec::try_from(p.detach()).unwrap();
        assert_eq!(got, after);
        assert_eq!(adam.steps_taken(), 1);
    }
}
