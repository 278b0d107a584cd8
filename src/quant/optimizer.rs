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
    /// 4-D weights lie in the buffer as O×kh×kw×I (channels-last: cuDNN's NHWC kernels take
    /// their views without a copy) instead of O×I×kh×kw. Either way each output channel is
    /// one run of the buffer, which the per-channel weight quantization relies on.
    channels_last: bool,
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
        FlatParams { flat, spans, channels_last: false }
    }

    pub fn channels_last(&self) -> bool {
        self.channels_last
    }

    /// Switches the buffer's layout (see [`FlatParams::channels_last`]); every other tensor laid
    /// out like it must go through [`FlatParams::to_canonical`] / [`FlatParams::from_canonical`]
    /// around this call.
    pub fn set_channels_last(&mut self, on: bool) {
        let canonical = self.to_canonical(&self.flat.detach());
        self.channels_last = on;
        let relaid = self.from_canonical(&canonical);
        tch::no_grad(|| self.flat.detach().copy_(&relaid));
    }

    fn is_nhwc(&self, s: &Span) -> bool {
        self.channels_last && !s.is_bias && s.size.len() == 4
    }

    /// Span `s`'s part of a buffer as the conv's parameter tensor (a view).
    fn view(&self, s: &Span, part: &Tensor) -> Tensor {
        if self.is_nhwc(s) {
            let z = &s.size;
            part.view([z[0], z[2], z[3], z[1]]).permute([0, 3, 1, 2])
        } else {
            part.view(s.size.as_slice())
        }
    }

    fn parts(&self, buf: &Tensor) -> Vec<Tensor> {
        let sizes: Vec<i64> = self.spans.iter().map(Span::numel).collect();
        buf.split_with_sizes(sizes.as_slice(), 0)
    }

    /// `buf` (laid out like `flat`) with every weight in O×I×kh×kw order: what checkpoints of
    /// the optimizer state hold, whatever the layout of the run that wrote them.
    pub fn to_canonical(&self, buf: &Tensor) -> Tensor {
        if !self.channels_last {
            return buf.shallow_clone();
        }
        let parts: Vec<Tensor> = self.spans.iter().zip(self.parts(buf)).map(|(s, p)| self.view(s, &p).contiguous().reshape([-1])).collect();
        Tensor::cat(&parts, 0)
    }

    /// The inverse of [`FlatParams::to_canonical`].
    pub fn from_canonical(&self, buf: &Tensor) -> Tensor {
        if !self.channels_last {
            return buf.shallow_clone();
        }
        let relay = |s: &Span, p: Tensor| if self.is_nhwc(s) { p.view(s.size.as_slice()).permute([0, 2, 3, 1]).contiguous().reshape([-1]) } else { p };
        let parts: Vec<Tensor> = self.spans.iter().zip(self.parts(buf)).map(|(s, p)| relay(s, p)).collect();
        Tensor::cat(&parts, 0)
    }

    /// Points the graph's conv parameters at views of `buf` (a flat tensor laid out like `flat`).
    /// One split, not a `narrow` per span: the backward of a split is one concatenation,
    /// while each narrow's backward would write a zero-filled gradient the size of `buf`.
    pub fn bind(&self, graph: &mut Graph, buf: &Tensor) {
        for (s, part) in self.spans.iter().zip(self.parts(buf)) {
            self.set(graph, s, self.view(s, &part));
        }
    }

    fn set(&self, graph: &mut Graph, s: &Span, t: Tensor) {
        if let Op::Conv(c) = &mut graph.nodes[s.node].op {
            if s.is_bias {
                c.bias = Some(t);
            } else {
                c.weight = t;
            }
        }
    }

    /// Binds ordinary (contiguous NCHW) fp32 tensors of `buf` for evaluation and saving:
    /// views of it, or copies where the buffer holds weights channels-last.
    pub fn bind_plain(&self, graph: &mut Graph, buf: &Tensor) {
        for (s, part) in self.spans.iter().zip(self.parts(buf)) {
            let t = if self.is_nhwc(s) { self.view(s, &part).contiguous() } else { self.view(s, &part) };
            self.set(graph, s, t);
        }
    }

    /// [`FlatParams::bind_plain`] of the master weights.
    pub fn bind_master(&self, graph: &mut Graph) {
        self.bind_plain(graph, &self.flat.detach());
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
