//! Adam over one flat fp32 buffer: every conv weight and bias of the student is
//! a view into it, so an optimizer step is a handful of kernels, not thousands.
//! For fp16 training the model's parameters are views into a half copy of that
//! buffer (refreshed after each step), gradients come back in fp16 and are
//! unscaled into fp32: mixed precision with a dynamic loss scale, as
//! torch.cuda.amp's GradScaler does, without autocast's per-op casts.

use crate::model::graph::{Graph, Op};
use tch::{Kind, Tensor};

pub struct FlatAdam {
    /// fp32 master parameters.
    pub flat: Tensor,
    /// The half copy the model computes with (fp16 training), else None.
    work: Option<Tensor>,
    params: Vec<Tensor>,
    m: Tensor,
    v: Tensor,
    pub steps: i64,
    betas: (f64, f64),
    eps: f64,
}

impl FlatAdam {
    /// Moves every conv parameter of `graph` into one buffer and makes it trainable
    /// (in fp16 when `half`).
    pub fn new(graph: &mut Graph, half: bool) -> FlatAdam {
        let mut tensors: Vec<&mut Tensor> = Vec::new();
        for n in &mut graph.nodes {
            if let Op::Conv(c) = &mut n.op {
                tensors.push(&mut c.weight);
                if let Some(b) = &mut c.bias {
                    tensors.push(b);
                }
            }
        }
        let device = tensors.first().map_or(tch::Device::Cpu, |t| t.device());
        let total: i64 = tensors.iter().map(|t| t.numel() as i64).sum();
        let flat = Tensor::zeros([total], (Kind::Float, device));
        let mut offset = 0;
        let mut shapes = Vec::new();
        for t in &tensors {
            let n = t.numel() as i64;
            let mut view = flat.narrow(0, offset, n).view(t.size().as_slice());
            tch::no_grad(|| view.copy_(t));
            shapes.push((offset, n, t.size()));
            offset += n;
        }
        let work = half.then(|| flat.to_kind(Kind::Half));
        let base = work.as_ref().unwrap_or(&flat);
        let mut params = Vec::new();
        for (t, (offset, n, size)) in tensors.into_iter().zip(shapes) {
            let view = base.narrow(0, offset, n).view(size.as_slice()).set_requires_grad(true);
            *t = view.shallow_clone();
            params.push(view);
        }
        let m = flat.zeros_like();
        let v = flat.zeros_like();
        FlatAdam { flat, work, params, m, v, steps: 0, betas: (0.9, 0.999), eps: 1e-8 }
    }

    fn flat_grad(&self) -> Tensor {
        let grads: Vec<Tensor> = self
            .params
            .iter()
            .map(|p| {
                let g = p.grad();
                if g.defined() {
                    g.reshape([-1]).to_kind(Kind::Float)
                } else {
                    p.detach().zeros_like().reshape([-1])
                }
            })
            .collect();
        Tensor::cat(&grads, 0)
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.zero_grad();
        }
    }

    /// One Adam step with gradients divided by `loss_scale`; skipped (false) if
    /// any gradient is inf/NaN.
    pub fn step(&mut self, lr: f64, loss_scale: f64) -> bool {
        let g = self.flat_grad() / loss_scale;
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
                let update = &self.m / denom * (lr / bc1);
                let _ = self.flat.g_sub_(&update);
                if let Some(w) = &mut self.work {
                    w.copy_(&self.flat);
                }
            });
        }
        self.zero_grad();
        finite
    }

    pub fn state(&self) -> (Tensor, Tensor) {
        (self.m.shallow_clone(), self.v.shallow_clone())
    }

    pub fn load_state(&mut self, m: &Tensor, v: &Tensor, steps: i64) {
        tch::no_grad(|| {
            self.m.copy_(m);
            self.v.copy_(v);
            if let Some(w) = &mut self.work {
                w.copy_(&self.flat);
            }
        });
        self.steps = steps;
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
