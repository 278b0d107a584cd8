//! Where a model's parameters come from while it is built: an upstream state dict
//! (BatchNorm unfused, or already fused), or random numbers (benchmarks).
//! Every source hands out *fused* parameters: conv weight and bias.

use anyhow::{anyhow, bail, Result};
use std::collections::{BTreeMap, BTreeSet};
use tch::{Kind, Tensor};

pub trait WeightSource {
    /// A `Conv` block: conv without bias + BatchNorm2d, or its fused form.
    fn conv_bn(&mut self, name: &str, shape: [i64; 4]) -> Result<(Tensor, Tensor)>;
    /// A `RepConvN`: 3x3 conv+BN in parallel with 1x1 conv+BN, or its fused 3x3.
    fn rep_conv(&mut self, name: &str, shape: [i64; 4]) -> Result<(Tensor, Tensor)>;
    /// A plain `nn.Conv2d`.
    fn plain_conv(&mut self, name: &str, shape: [i64; 4], bias: bool) -> Result<(Tensor, Option<Tensor>)>;
    /// A constant buffer (the DFL's arange weight): the stored one if any, else `default`.
    fn fixed(&mut self, _name: &str, default: Tensor) -> Result<Tensor> {
        Ok(default)
    }
}

/// Tensors under upstream names, fp32 on the CPU, plus each BatchNorm's eps.
pub struct StateDict {
    pub tensors: BTreeMap<String, Tensor>,
    pub bn_eps: BTreeMap<String, f64>,
    used: BTreeSet<String>,
}

impl StateDict {
    pub fn new(tensors: BTreeMap<String, Tensor>, bn_eps: BTreeMap<String, f64>) -> Self {
        StateDict { tensors, bn_eps, used: BTreeSet::new() }
    }

    fn has(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
    }

    fn take(&mut self, key: &str, shape: &[i64]) -> Result<Tensor> {
        let t = self.tensors.get(key).ok_or_else(|| anyhow!("tensor `{key}` is missing"))?;
        if t.size() != shape {
            bail!("tensor `{key}` has shape {:?}, the model layout expects {:?}", t.size(), shape);
        }
        self.used.insert(key.to_string());
        Ok(t.to_kind(Kind::Float))
    }

    /// (scale, shift) of a BatchNorm in eval mode: y = x * scale + shift.
    fn bn(&mut self, name: &str, c: i64) -> Result<(Tensor, Tensor)> {
        let gamma = self.take(&format!("{name}.weight"), &[c])?;
        let beta = self.take(&format!("{name}.bias"), &[c])?;
        let mean = self.take(&format!("{name}.running_mean"), &[c])?;
        let var = self.take(&format!("{name}.running_var"), &[c])?;
        let eps = self.bn_eps.get(name).copied().unwrap_or(1e-5);
        let std = (var + eps).sqrt();
        let scale = gamma / std;
        let shift = beta - &mean * &scale;
        Ok((scale, shift))
    }

    fn fuse(&mut self, name: &str, shape: [i64; 4]) -> Result<(Tensor, Tensor)> {
        let w = self.take(&format!("{name}.conv.weight"), &shape)?;
        let (scale, shift) = self.bn(&format!("{name}.bn"), shape[0])?;
        Ok((w * scale.view([-1, 1, 1, 1]), shift))
    }

    /// Keys never asked for: a sign that the checkpoint and the layout disagree.
    pub fn unused(&self) -> Vec<&str> {
        self.tensors.keys().filter(|k| !self.used.contains(*k)).map(String::as_str).collect()
    }
}

impl WeightSource for StateDict {
    fn fixed(&mut self, name: &str, default: Tensor) -> Result<Tensor> {
        if self.has(name) {
            return self.take(name, &default.size());
        }
        Ok(default)
    }

    fn conv_bn(&mut self, name: &str, shape: [i64; 4]) -> Result<(Tensor, Tensor)> {
        if self.has(&format!("{name}.bn.weight")) {
            return self.fuse(name, shape);
        }
        let w = self.take(&format!("{name}.conv.weight"), &shape)?;
        let b = self.take(&format!("{name}.conv.bias"), &shape[..1])?;
        Ok((w, b))
    }

    fn rep_conv(&mut self, name: &str, shape: [i64; 4]) -> Result<(Tensor, Tensor)> {
        if !self.has(&format!("{name}.conv1.conv.weight")) {
            let w = self.take(&format!("{name}.conv.weight"), &shape)?;
            let b = self.take(&format!("{name}.conv.bias"), &shape[..1])?;
            return Ok((w, b));
        }
        let (w3, b3) = self.fuse(&format!("{name}.conv1"), shape)?;
        let (w1, b1) = self.fuse(&format!("{name}.conv2"), [shape[0], shape[1], 1, 1])?;
        let pad = (shape[2] - 1) / 2;
        let w1 = w1.constant_pad_nd([pad, pad, pad, pad]);
        Ok((w3 + w1, b3 + b1))
    }

    fn plain_conv(&mut self, name: &str, shape: [i64; 4], bias: bool) -> Result<(Tensor, Option<Tensor>)> {
        let w = self.take(&format!("{name}.weight"), &shape)?;
        let b = if bias { Some(self.take(&format!("{name}.bias"), &shape[..1])?) } else { None };
        Ok((w, b))
    }
}

/// Random parameters with sensible magnitudes, for benchmarks and shape checks.
pub struct RandomWeights;

impl RandomWeights {
    fn weight(shape: [i64; 4]) -> Tensor {
        let fan_in = (shape[1] * shape[2] * shape[3]) as f64;
        Tensor::randn(shape, (Kind::Float, tch::Device::Cpu)) * (1.0 / fan_in).sqrt()
    }
    fn bias(c: i64) -> Tensor {
        Tensor::randn([c], (Kind::Float, tch::Device::Cpu)) * 0.01
    }
}

impl WeightSource for RandomWeights {
    fn conv_bn(&mut self, _: &str, shape: [i64; 4]) -> Result<(Tensor, Tensor)> {
        Ok((Self::weight(shape), Self::bias(shape[0])))
    }
    fn rep_conv(&mut self, _: &str, shape: [i64; 4]) -> Result<(Tensor, Tensor)> {
        Ok((Self::weight(shape), Self::bias(shape[0])))
    }
    fn plain_conv(&mut self, _: &str, shape: [i64; 4], bias: bool) -> Result<(Tensor, Option<Tensor>)> {
        Ok((Self::weight(shape), bias.then(|| Self::bias(shape[0]))))
    }
}
