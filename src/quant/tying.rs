//! Scale tying (TensorRT requires equal scales where tensors meet, see its "Q/DQ layer placement" guide): quantizers meeting at a Concat or a MaxPool become one,
//! so TensorRT runs the junction in INT8 without re-quantizing. Found by a walk
//! over the model's own graph, every junction included (the reference's ONNX walk
//! misses SPPELAN's pools and the top-level Concat layers' own input quantizers).
//! `TieScope::Reference` reproduces the reference's narrower set, for comparison.

use super::quantizer::QuantTable;
use crate::model::graph::{Graph, Op, QuantId, ValueId};

/// Which junctions are tied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TieScope {
    /// Every Concat and MaxPool junction (what TensorRT needs to fuse them).
    All,
    /// What the reference's ONNX walk finds: at each Concat, the conv input quantizers
    /// reading its output or one of its inputs directly; nothing at max-pools (they are
    /// quantized after its walk) and not the Concat layers' own input quantizers.
    Reference,
}

impl TieScope {
    pub fn parse(s: &str) -> anyhow::Result<TieScope> {
        match s {
            "all" => Ok(TieScope::All),
            "reference" => Ok(TieScope::Reference),
            _ => anyhow::bail!("--ties {s}: expected all or reference"),
        }
    }
}

/// One set of quantizers made one: the survivor and the labels of all members.
#[derive(Debug, Clone)]
pub struct TieGroup {
    pub quant: QuantId,
    pub members: Vec<String>,
}

struct UnionFind(Vec<usize>);

impl UnionFind {
    fn find(&mut self, x: usize) -> usize {
        let mut r = x;
        while self.0[r] != r {
            r = self.0[r];
        }
        self.0[x] = r;
        r
    }
    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        // The earlier quantizer (first in execution order) survives.
        if ra != rb {
            let (lo, hi) = (ra.min(rb), ra.max(rb));
            self.0[hi] = lo;
        }
    }
}

/// Quantizers that quantize value `v`: the input slots of its readers, and its producer's output slot.
fn quantizers_of(graph: &Graph, consumers: &[Vec<(usize, usize)>], producers: &[Option<usize>], v: ValueId) -> Vec<QuantId> {
    let mut qs: Vec<QuantId> = consumers[v].iter().filter_map(|&(n, k)| graph.nodes[n].quant.inputs[k].map(|s| s.quant)).collect();
    if let Some(p) = producers[v] {
        qs.extend(graph.nodes[p].quant.output.map(|s| s.quant));
    }
    qs
}

/// Input quantizers of the convs that read value `v`.
fn conv_quantizers_of(graph: &Graph, consumers: &[Vec<(usize, usize)>], v: ValueId) -> Vec<QuantId> {
    consumers[v]
        .iter()
        .filter(|&&(n, _)| matches!(graph.nodes[n].op, Op::Conv(_)))
        .filter_map(|&(n, k)| graph.nodes[n].quant.inputs[k].map(|s| s.quant))
        .collect()
}

/// Ties quantizers across the junctions of `scope`, rewrites the slots to the
/// survivors, drops the merged quantizers, and returns the groups formed.
pub fn tie(graph: &mut Graph, table: &mut QuantTable, scope: TieScope) -> Vec<TieGroup> {
    let consumers = graph.consumers();
    let producers = graph.producers();
    let mut uf = UnionFind((0..table.len()).collect());
    for node in &graph.nodes {
        let junction = match scope {
            TieScope::All => matches!(node.op, Op::Concat | Op::MaxPool { .. }),
            TieScope::Reference => matches!(node.op, Op::Concat),
        };
        if !junction {
            continue;
        }
        let mut qs = Vec::new();
        for &v in node.inputs.iter().chain(&node.outputs) {
            match scope {
                TieScope::All => qs.extend(quantizers_of(graph, &consumers, &producers, v)),
                TieScope::Reference => qs.extend(conv_quantizers_of(graph, &consumers, v)),
            }
        }
        for w in qs.windows(2) {
            uf.union(w[0], w[1]);
        }
    }
    let roots: Vec<usize> = (0..table.len()).map(|q| uf.find(q)).collect();
    let groups = groups_of(&roots, table);
    compact(graph, table, &roots);
    groups
}

fn groups_of(roots: &[usize], table: &QuantTable) -> Vec<TieGroup> {
    let mut groups: Vec<TieGroup> = Vec::new();
    for (q, &r) in roots.iter().enumerate() {
        if roots.iter().filter(|&&x| x == r).count() < 2 {
            continue;
        }
        match groups.iter_mut().find(|g| g.quant == r) {
            Some(g) => g.members.push(table.quantizers[q].label.clone()),
            None => groups.push(TieGroup { quant: r, members: vec![table.quantizers[q].label.clone()] }),
        }
    }
    groups
}

/// Renumbers quantizers so that only survivors remain, in order.
fn compact(graph: &mut Graph, table: &mut QuantTable, roots: &[usize]) {
    let mut new_id = vec![usize::MAX; roots.len()];
    let mut kept = Vec::new();
    for (q, quant) in std::mem::take(&mut table.quantizers).into_iter().enumerate() {
        if roots[q] == q {
            new_id[q] = kept.len();
            kept.push(quant);
        }
    }
    table.quantizers = kept;
    for node in &mut graph.nodes {
        for slot in node.quant.all_mut() {
            slot.quant = new_id[roots[slot.quant]];
        }
    }
}

impl TieGroup {
    pub fn log_line(&self) -> String {
        format!("tie: {} share one quantizer", self.members.join(", "))
    }
}
