//! Emits graph nodes while walking the model yaml; tracks channels and strides.

use super::config::Activation;
use super::graph::{Conv2d, Graph, Layer, Node, Op, QuantSlots, ValueId};
use super::weights::WeightSource;
use anyhow::{bail, Result};

pub struct Builder<'a> {
    pub nodes: Vec<Node>,
    pub channels: Vec<i64>,
    pub value_stride: Vec<i64>,
    pub layer: usize,
    pub act: Activation,
    pub src: &'a mut dyn WeightSource,
}

/// Geometry of a conv: out channels, kernel, stride, groups.
#[derive(Clone, Copy)]
pub struct ConvGeom {
    pub c2: i64,
    pub k: i64,
    pub s: i64,
    pub p: Option<i64>,
    pub g: i64,
}

impl ConvGeom {
    pub fn new(c2: i64, k: i64, s: i64) -> Self {
        ConvGeom { c2, k, s, p: None, g: 1 }
    }
    pub fn pad(self, p: i64) -> Self {
        ConvGeom { p: Some(p), ..self }
    }
    pub fn groups(self, g: i64) -> Self {
        ConvGeom { g, ..self }
    }
}

impl<'a> Builder<'a> {
    pub fn new(src: &'a mut dyn WeightSource, act: Activation) -> Self {
        Builder { nodes: Vec::new(), channels: Vec::new(), value_stride: Vec::new(), layer: 0, act, src }
    }

    pub fn new_value(&mut self, channels: i64, stride: i64) -> ValueId {
        self.channels.push(channels);
        self.value_stride.push(stride);
        self.channels.len() - 1
    }

    fn push(&mut self, name: &str, op: Op, inputs: Vec<ValueId>, outputs: Vec<ValueId>) {
        let quant = QuantSlots { inputs: vec![None; inputs.len()], ..Default::default() };
        self.nodes.push(Node { op, inputs, outputs, layer: self.layer, name: name.to_string(), quant });
    }

    fn emit_conv(
        &mut self,
        name: &str,
        prefix: String,
        x: ValueId,
        geom: ConvGeom,
        (weight, bias): (tch::Tensor, Option<tch::Tensor>),
        act: Activation,
    ) -> ValueId {
        let stride = self.value_stride[x] * geom.s;
        let y = self.new_value(geom.c2, stride);
        let conv = Conv2d { prefix, weight, bias, stride: geom.s, padding: geom.p.unwrap_or(geom.k / 2), groups: geom.g, dilation: 1, act };
        self.push(name, Op::Conv(conv), vec![x], vec![y]);
        y
    }

    fn shape(&self, x: ValueId, geom: ConvGeom) -> Result<[i64; 4]> {
        let c1 = self.channels[x];
        // What torch.nn.Conv2d itself refuses, said before libtorch divides by it.
        if c1 < 1 || geom.c2 < 1 {
            bail!("channels {c1} -> {}: must be at least 1", geom.c2);
        }
        if geom.k < 1 || geom.s < 1 || geom.g < 1 || geom.p.is_some_and(|p| p < 0) {
            bail!(
                "kernel {}, stride {}, groups {}, padding {:?}: kernel, stride and groups must be at least 1, padding at least 0",
                geom.k,
                geom.s,
                geom.g,
                geom.p
            );
        }
        if c1 % geom.g != 0 || geom.c2 % geom.g != 0 {
            bail!("channels {c1} -> {} do not divide into {} groups", geom.c2, geom.g);
        }
        Ok([geom.c2, c1 / geom.g, geom.k, geom.k])
    }

    /// Upstream `Conv`: conv (no bias) + BN + activation, fused.
    pub fn conv(&mut self, name: &str, x: ValueId, geom: ConvGeom, act: bool) -> Result<ValueId> {
        let (w, b) = self.src.conv_bn(name, self.shape(x, geom)?)?;
        let act = if act { self.act } else { Activation::Identity };
        Ok(self.emit_conv(name, format!("{name}.conv"), x, geom, (w, Some(b)), act))
    }

    /// Upstream `RepConvN` (k=3, p=1), fused into one 3x3 conv + activation.
    pub fn rep_conv(&mut self, name: &str, x: ValueId, c2: i64) -> Result<ValueId> {
        let geom = ConvGeom::new(c2, 3, 1);
        let (w, b) = self.src.rep_conv(name, self.shape(x, geom)?)?;
        Ok(self.emit_conv(name, format!("{name}.conv"), x, geom, (w, Some(b)), self.act))
    }

    /// Upstream `nn.Conv2d` with padding k/2 and no activation.
    pub fn plain_conv(&mut self, name: &str, x: ValueId, geom: ConvGeom, bias: bool) -> Result<ValueId> {
        let (w, b) = self.src.plain_conv(name, self.shape(x, geom)?, bias)?;
        Ok(self.emit_conv(name, name.to_string(), x, geom, (w, b), Activation::Identity))
    }

    pub fn split(&mut self, name: &str, x: ValueId, sizes: &[i64]) -> Vec<ValueId> {
        let stride = self.value_stride[x];
        let outs: Vec<_> = sizes.iter().map(|&c| self.new_value(c, stride)).collect();
        self.push(name, Op::Split { sizes: sizes.to_vec() }, vec![x], outs.clone());
        outs
    }

    /// `x.chunk(2, 1)`.
    pub fn chunk2(&mut self, name: &str, x: ValueId) -> (ValueId, ValueId) {
        let h = self.channels[x] / 2;
        let v = self.split(name, x, &[h, self.channels[x] - h]);
        (v[0], v[1])
    }

    pub fn concat(&mut self, name: &str, xs: &[ValueId]) -> ValueId {
        let c = xs.iter().map(|&x| self.channels[x]).sum();
        let y = self.new_value(c, self.value_stride[xs[0]]);
        self.push(name, Op::Concat, xs.to_vec(), vec![y]);
        y
    }

    pub fn add(&mut self, name: &str, xs: &[ValueId]) -> ValueId {
        let last = *xs.last().expect("add of no inputs");
        let y = self.new_value(self.channels[last], self.value_stride[last]);
        self.push(name, Op::Add, xs.to_vec(), vec![y]);
        y
    }

    pub fn max_pool(&mut self, name: &str, x: ValueId, kernel: i64, stride: i64, padding: i64) -> ValueId {
        let y = self.new_value(self.channels[x], self.value_stride[x] * stride);
        self.push(name, Op::MaxPool { kernel, stride, padding }, vec![x], vec![y]);
        y
    }

    pub fn avg_pool(&mut self, name: &str, x: ValueId, kernel: i64, stride: i64, padding: i64) -> ValueId {
        let y = self.new_value(self.channels[x], self.value_stride[x] * stride);
        self.push(name, Op::AvgPool { kernel, stride, padding }, vec![x], vec![y]);
        y
    }

    pub fn upsample(&mut self, name: &str, x: ValueId, scale: i64) -> ValueId {
        let y = self.new_value(self.channels[x], (self.value_stride[x] / scale).max(1));
        self.push(name, Op::Upsample { scale }, vec![x], vec![y]);
        y
    }

    pub fn resize_like(&mut self, name: &str, x: ValueId, like: ValueId) -> ValueId {
        let y = self.new_value(self.channels[x], self.value_stride[like]);
        self.push(name, Op::ResizeLike, vec![x, like], vec![y]);
        y
    }

    pub fn detect(&mut self, name: &str, maps: &[ValueId], detect: super::graph::Detect) -> ValueId {
        let y = self.new_value(4 + detect.nc, 0);
        self.push(name, Op::Detect(detect), maps.to_vec(), vec![y]);
        y
    }

    /// (B, 4+nc, A) detections with the coefficient maps appended: (B, 4+nc+nm, A).
    pub fn append_coeffs(&mut self, name: &str, detections: ValueId, maps: &[ValueId]) -> ValueId {
        let nm: i64 = self.channels[maps[0]];
        let y = self.new_value(self.channels[detections] + nm, 0);
        let inputs = std::iter::once(detections).chain(maps.iter().copied()).collect();
        self.push(name, Op::AppendCoeffs, inputs, vec![y]);
        y
    }

    pub fn finish(self, input: ValueId, layers: Vec<Layer>, heads: Heads, nc: usize) -> Graph {
        Graph {
            num_values: self.channels.len(),
            nodes: self.nodes,
            input,
            layers,
            output: heads.output,
            output_aux: heads.output_aux,
            heads: heads.maps,
            strides: heads.strides,
            nc,
            nm: heads.nm,
            proto: heads.proto,
            channels: self.channels,
            value_stride: self.value_stride,
        }
    }
}

/// What the detect layer produced.
pub struct Heads {
    pub output: ValueId,
    pub output_aux: Option<ValueId>,
    pub maps: Vec<ValueId>,
    pub strides: Vec<f64>,
    /// Segmentation heads: mask prototypes and coefficients per anchor.
    pub proto: Option<ValueId>,
    pub nm: usize,
}
