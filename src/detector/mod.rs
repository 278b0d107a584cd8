//! The detector every command works on: a model (config, class names, fused graph)
//! with its quantizer state when quantized, assembled from a checkpoint and saved in
//! yolo-qat's own format. This layer sits above `model` and `quant`: it is the one
//! place that knows both how a model is built and how its quantizers are stored.

pub mod epoch_checkpoints;
pub mod info;
pub mod load;
pub mod native;

pub use load::{load, random, read_checkpoint};

use crate::model::forward::{NoQuant, Values};
use crate::model::graph::{Graph, Op, ValueId};
use crate::model::ModelConfig;
use crate::quant::quantizer::FakeQuant;
use crate::quant::state::{to_meta, QuantState};
use crate::quant::QuantModel;
use anyhow::Result;
use native::NativeMeta;
use std::path::{Path, PathBuf};
use tch::Tensor;

pub struct Detector {
    pub cfg: ModelConfig,
    pub names: Vec<String>,
    pub graph: Graph,
    pub quant: Option<QuantState>,
    pub source: PathBuf,
}

impl Detector {
    /// Eval output (B, 4+nc, A), through the fake quantizers when there are any.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let out = self.graph.output;
        self.run(x, &[out]).take(out)
    }

    /// Runs the graph (fake-quantized when quantized), keeping the values `keep`.
    pub fn run(&self, x: &Tensor, keep: &[ValueId]) -> Values {
        match &self.quant {
            Some(q) => self.graph.run(x, &mut FakeQuant(&q.table), keep),
            None => self.graph.run(x, &mut NoQuant, keep),
        }
    }

    pub fn is_quantized(&self) -> bool {
        self.quant.is_some()
    }

    pub fn to(&mut self, device: tch::Device, kind: tch::Kind) {
        self.graph.to(device, kind);
        if let Some(q) = &mut self.quant {
            q.table.to_device(device);
        }
    }

    /// Fused parameters under upstream names.
    pub fn state_dict(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for n in &self.graph.nodes {
            match &n.op {
                Op::Conv(c) => {
                    out.push((format!("{}.weight", c.prefix), c.weight.shallow_clone()));
                    if let Some(b) = &c.bias {
                        out.push((format!("{}.bias", c.prefix), b.shallow_clone()));
                    }
                }
                Op::Detect(d) => out.push((format!("{}.conv.weight", n.name), d.dfl_weight.shallow_clone())),
                _ => {}
            }
        }
        out
    }

    /// Writes a yolo-qat checkpoint (fused weights, quantizer state), atomically.
    pub fn save(&self, path: &Path, info: serde_json::Value) -> Result<()> {
        let mut tensors = self.state_dict();
        let quant = self.quant.as_ref().map(|q| {
            let (meta, amax) = to_meta(&self.graph, q);
            tensors.extend(amax);
            meta
        });
        let meta = NativeMeta {
            format: native::FORMAT.into(),
            version: native::VERSION,
            yaml: serde_yaml::to_string(&self.cfg.raw)?,
            names: self.names.clone(),
            fused: true,
            quant,
            info,
        };
        native::write(path, &meta, &tensors)
    }
}

impl QuantModel for Detector {
    fn graph(&self) -> &Graph {
        &self.graph
    }
    fn graph_mut(&mut self) -> &mut Graph {
        &mut self.graph
    }
    fn quant(&self) -> Option<&QuantState> {
        self.quant.as_ref()
    }
    fn parts_mut(&mut self) -> (&mut Graph, &mut Option<QuantState>) {
        (&mut self.graph, &mut self.quant)
    }
    fn source(&self) -> &Path {
        &self.source
    }
}
