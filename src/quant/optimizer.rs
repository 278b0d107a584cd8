//! The student's parameters as one flat fp32 buffer (the Adam state lives beside
//! it), so that weight fake-quantization, the gradient and the optimizer step are
//! a handful of kernels per step instead of a few per tensor.

use crate::model::graph::{Graph, Op};
use tch::{Kind, Tensor};

/// Where one conv parameter lives in the flat buffer.
#[derive(Debug, Clone)]
pub struct Span {
    pub node: usize,
    pub is_bias: bool,
    pub offset: i64,
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
        let mut offset = 0;
        for (i, n) in graph.nodes.iter().enumerate() {
            if let Op::Conv(c) = &n.op {
                for (t, is_bias) in std::iter::once((&c.weight, false)).chain(c.bias.iter().map(|b| (b, true))) {
                    let span = Span { node: i, is_bias, offset, size: t.size() };
                    offset += span.numel();
                    parts.push(t.detach().to_kind(Kind::Float).reshape([-1]));
                    spans.push(span);
                }
            }
        }
        let flat = Tensor::cat(&parts, 0).set_requires_grad(true);
        FlatParams { flat, spans }
    }

    /// Points the graph's conv parameters at views of `buf` (a flat tensor laid out like `flat`).
    pub fn bind(&self, graph: &mut Graph, buf: &Tensor) {
        for s in &self.spans {
            if let Op::Conv(c) = &mut graph.nodes[s.node].op {
                let view = buf.narrow(0, s.offset, s.numel()).view(s.size.as_slice());
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
pub struct Adam {
    m: Tensor,
    v: Tensor,
    pub steps: i64,
    betas: (f64, f64),
    eps: f64,
}

impl Adam {
    pub fn new(like: &Tensor) -> Adam {
        let z = like.detach().zeros_like();
        Adam { m: z.copy(), v: z, steps: 0, betas: (0.9, 0.999), eps: 1e-8 }
    }

    /// One step from `param`'s gradient divided by `loss_scale`; false (and no
    /// update) if any gradient is inf/NaN. Clears the gradient.
    pub fn step(&mut self, param: &mut Tensor, lr: f64, loss_scale: f64) -> bool {
        let grad = param.grad();
        if !grad.defined() {
            return true;
        }
        let g = &grad / loss_scale;
        let finite = g.isfinite().all().int64_value(&[]) != 0;
        if finite {
            self.steps += 1;
            let (b1, b2) = self.betas;
            tch::no_grad(|| {
                let _ = self.m.g_mul_scalar_(b1).g_add_(&(&g * (1.0 - b1)));
                let _ = self.v.g_mul_scalar_(b2).g_add_(&(g.square() * (1.0 - b2)));
                let bc1 = 1.0 - b1.powi(self.steps as i32);
                let bc2 = 1.0 - b2.powi(self.steps as i32);
                let denom = self.v.sqrt() / bc2.sqrt() + self.eps;
                let _ = param.g_sub_(&(&self.m / denom * (lr / bc1)));
            });
        }
        param.zero_grad();
        finite
    }
}

/// Dynamic loss scale: halves on overflow, doubles after 2000 clean steps.
pub struct LossScale {
    pub scale: f64,
    clean: u32,
}

impl Default for LossScale {
    fn default() -> Self {
        LossScale { scale: 65536.0, clean: 0 }
    }
}

impl LossScale {
    pub fn update(&mut self, finite: bool) {
        if finite {
            self.clean += 1;
            if self.clean == 2000 {
                self.scale *= 2.0;
                self.clean = 0;
            }
        } else {
            self.scale *= 0.5;
            self.clean = 0;
        }
    }
}
