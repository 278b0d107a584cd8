//! Where quantizers go (the reference YOLOv9-QAT patch's `quantize.py` placement): every conv's weight (per channel) and input,
//! SPPELAN's max-pools, both inputs of a RepNBottleneck's residual add (sharing
//! `cv1`'s input quantizer), the inputs of top-level Concat and Upsample layers,
//! the avg-pool output of ADown/AConv (shared with their `cv1`), and the DFL conv.

use super::fake_quant::channel_amax;
use super::quantizer::QuantTable;
use crate::model::graph::{Graph, Op, QuantId, QuantSlot};
use std::collections::HashMap;

fn on(quant: QuantId) -> Option<QuantSlot> {
    Some(QuantSlot { quant, enabled: true })
}

/// Adds quantizers to every node of `graph`; weight amax is set right away (max).
pub fn place(graph: &mut Graph) -> QuantTable {
    let mut table = QuantTable::default();
    // Quantizers that a later node must reuse, by the name of that node.
    let mut shared_input: HashMap<String, QuantId> = HashMap::new();
    let top_level: Vec<String> = graph.layers.iter().map(|l| l.module.clone()).collect();
    for node in &mut graph.nodes {
        let is_layer = node.name == format!("model.{}", node.layer);
        let module = top_level[node.layer].as_str();
        let n_in = node.inputs.len();
        match &node.op {
            Op::Conv(c) => {
                let w = table.add(true, format!("{} weight", node.name));
                table.quantizers[w].amax = Some(channel_amax(&c.weight));
                node.quant.weight = on(w);
                let q = match shared_input.get(&node.name) {
                    Some(&q) => q,
                    None => table.add(false, format!("{} input", node.name)),
                };
                node.quant.inputs[0] = on(q);
                if let Some(block) = node.name.strip_suffix(".cv1") {
                    shared_input.insert(format!("{block}.add"), q);
                }
            }
            Op::Add if node.name.ends_with(".add") => {
                if let Some(&q) = shared_input.get(&node.name) {
                    node.quant.inputs = vec![on(q); n_in];
                }
            }
            Op::MaxPool { .. } if node.name.ends_with(".m") => {
                node.quant.inputs[0] = on(table.add(false, format!("{} input", node.name)));
            }
            Op::AvgPool { .. } => {
                let q = table.add(false, format!("{} output", node.name));
                node.quant.output = on(q);
                if let Some(block) = node.name.strip_suffix(".avg_pool") {
                    shared_input.insert(format!("{block}.cv1"), q);
                }
            }
            Op::Concat | Op::Upsample { .. } if is_layer && matches!(module, "Concat" | "nn.Upsample") => {
                for k in 0..n_in {
                    node.quant.inputs[k] = on(table.add(false, format!("{} input {k}", node.name)));
                }
            }
            Op::Detect(_) => node.quant.internal = on(table.add(false, format!("{} conv input", node.name))),
            _ => {}
        }
    }
    table.refresh();
    table
}
