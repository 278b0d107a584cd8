//! One ONNX node sequence per model-graph node: Conv (+ Sigmoid·Mul for SiLU,
//! Relu, LeakyRelu), MaxPool, AveragePool (count_include_pad=1), Resize
//! (nearest, asymmetric/floor: PyTorch's `nearest`), Concat, Split (opset-13
//! form), Add; the Detect node goes to `decode`. Quantizer slots become Q/DQ
//! pairs through the `QdqEmitter`, exactly where the forward pass applies them.

use super::decode::decode;
use super::onnx_builder::{Attr, Dim, OnnxBuilder};
use super::qdq::QdqEmitter;
use super::shapes::needed_nodes;
use crate::model::config::Activation;
use crate::model::graph::{Conv2d, Graph, Node, Op};
use anyhow::{anyhow, bail, Result};
use tch::Kind;

/// How shapes are known at export time.
pub struct ShapePlan {
    /// The batch dimension of `images`.
    pub batch: Dim,
    /// Static spatial size of every model value (None: height/width are symbolic).
    pub sizes: Option<Vec<Option<(i64, i64)>>>,
}

/// What the lowered graph produced.
pub struct Lowered {
    /// Name of the (B, 4+nc[+nm], A) output.
    pub output: String,
    /// Segmentation models: the prototypes' output name and static (H/4, W/4).
    pub proto: Option<(String, Option<(i64, i64)>)>,
    /// A, the number of anchors (fixed for static sizes).
    pub anchors: Dim,
}

pub fn tensor_f32(t: &tch::Tensor) -> Result<Vec<f32>> {
    Ok(Vec::<f32>::try_from(t.to_device(tch::Device::Cpu).to_kind(Kind::Float).contiguous().view([-1]))?)
}

/// Lowers every node the eval output (and the prototypes) depend on; they get `output_names`.
pub fn lower_graph(g: &mut OnnxBuilder, graph: &Graph, qdq: &mut QdqEmitter, images: &str, plan: &ShapePlan, output_names: [&str; 2]) -> Result<Lowered> {
    let [output_name, proto_name] = output_names;
    let needed = needed_nodes(graph);
    let mut names: Vec<Option<String>> = vec![None; graph.num_values];
    names[graph.input] = Some(images.to_string());
    let mut anchors = Dim::Sym("anchors".into());
    for (i, node) in graph.nodes.iter().enumerate() {
        if !needed[i] {
            continue;
        }
        let raw: Vec<String> = node
            .inputs
            .iter()
            .map(|&v| names[v].clone().ok_or_else(|| anyhow!("{}: input value {v} was not exported (graph not in execution order)", node.name)))
            .collect::<Result<_>>()?;
        let mut xs = Vec::with_capacity(raw.len());
        for (k, x) in raw.iter().enumerate() {
            let slot = node.quant.inputs.get(k).copied().flatten();
            xs.push(qdq.activation(g, x, slot, &format!("{}/input{k}", node.name))?);
        }
        let outs: Vec<String> = match &node.op {
            Op::Detect(d) => {
                let level_sizes = match &plan.sizes {
                    Some(s) => Some(node.inputs.iter().map(|&v| s[v].ok_or_else(|| anyhow!("{}: no static size", node.name))).collect::<Result<Vec<_>>>()?),
                    None => None,
                };
                if let Some(ls) = &level_sizes {
                    anchors = Dim::Fixed(ls.iter().map(|(h, w)| h * w).sum());
                }
                let out = if node.outputs[0] == graph.output { g.reserve(output_name)? } else { g.fresh(&format!("{}/output", node.name)) };
                vec![decode(g, node, d, &xs, level_sizes.as_deref(), qdq, out)?]
            }
            Op::AppendCoeffs => {
                let out = g.reserve(output_name)?;
                vec![append_coeffs(g, node, graph, &xs, out)]
            }
            _ => lower_node(g, graph, node, &xs, plan, qdq)?,
        };
        if outs.len() != node.outputs.len() {
            bail!("{}: lowered to {} outputs, the model has {}", node.name, outs.len(), node.outputs.len());
        }
        for (&v, name) in node.outputs.iter().zip(outs) {
            // An output slot quantizes the value for every reader.
            let name = if node.quant.output.is_some() { qdq.activation(g, &name, node.quant.output, &format!("{}/output", node.name))? } else { name };
            names[v] = Some(name);
        }
    }
    let output = names[graph.output].clone().ok_or_else(|| anyhow!("the model output was not exported"))?;
    let proto = match graph.proto {
        Some(p) => {
            let value = names[p].clone().ok_or_else(|| anyhow!("the prototypes were not exported"))?;
            let name = g.reserve(proto_name)?;
            g.node_named("Identity", "", proto_name, &[&value], vec![name.clone()], vec![]);
            Some((name, plan.sizes.as_ref().and_then(|s| s[p])))
        }
        None => None,
    };
    Ok(Lowered { output, proto, anchors })
}

/// `model::forward::append_coeffs`: each (B, nm, H, W) coefficient map flattened to
/// (B, nm, H·W), concatenated over levels, appended to the detections' rows.
fn append_coeffs(g: &mut OnnxBuilder, node: &Node, graph: &Graph, xs: &[String], out: String) -> String {
    let p = node.name.as_str();
    let nm = graph.channels[node.inputs[1]];
    let flat_shape = g.const_i64(&[0, nm, -1]);
    let flat: Vec<String> = xs[1..].iter().enumerate().map(|(i, m)| g.node("Reshape", &format!("{p}/flatten{i}"), &[m, &flat_shape], vec![])).collect();
    let refs: Vec<&str> = flat.iter().map(String::as_str).collect();
    let coeffs = g.node("Concat", &format!("{p}/cat"), &refs, vec![("axis", Attr::Int(2))]);
    g.node_named("Concat", "", p, &[&xs[0], &coeffs], vec![out], vec![("axis", Attr::Int(1))]).remove(0)
}

fn pads(p: i64) -> Attr {
    Attr::Ints(vec![p, p, p, p])
}

fn lower_node(g: &mut OnnxBuilder, graph: &Graph, node: &Node, xs: &[String], plan: &ShapePlan, qdq: &mut QdqEmitter) -> Result<Vec<String>> {
    let name = node.name.as_str();
    let x = xs[0].as_str();
    Ok(match &node.op {
        Op::Conv(c) => vec![conv(g, node, c, x, qdq)?],
        Op::MaxPool { kernel, stride, padding } => vec![g.node(
            "MaxPool",
            name,
            &[x],
            vec![
                ("kernel_shape", Attr::Ints(vec![*kernel; 2])),
                ("strides", Attr::Ints(vec![*stride; 2])),
                ("pads", pads(*padding)),
                ("ceil_mode", Attr::Int(0)),
            ],
        )],
        Op::AvgPool { kernel, stride, padding } => vec![g.node(
            "AveragePool",
            name,
            &[x],
            vec![
                ("kernel_shape", Attr::Ints(vec![*kernel; 2])),
                ("strides", Attr::Ints(vec![*stride; 2])),
                ("pads", pads(*padding)),
                ("ceil_mode", Attr::Int(0)),
                ("count_include_pad", Attr::Int(1)),
            ],
        )],
        Op::Upsample { scale } => {
            let roi = g.const_f32(&[0], 0.0);
            let s = *scale as f32;
            let scales = g.cached_const(format!("resize scales {s}"), |g| g.init_f32("resize_scales", &[4], &[1.0, 1.0, s, s]));
            vec![g.node("Resize", name, &[x, &roi, &scales], resize_attrs())]
        }
        Op::ResizeLike => {
            let roi = g.const_f32(&[0], 0.0);
            let sizes = match (&plan.sizes, &plan.batch) {
                (Some(s), Dim::Fixed(b)) => {
                    let (h, w) = s[node.inputs[1]].ok_or_else(|| anyhow!("{name}: no static size"))?;
                    g.const_i64(&[*b, graph.channels[node.inputs[0]], h, w])
                }
                _ => {
                    let s0 = g.node("Shape", &format!("{name}/shape0"), &[x], vec![]);
                    let s1 = g.node("Shape", &format!("{name}/shape1"), &[&xs[1]], vec![]);
                    let (z, two, four) = (g.const_i64(&[0]), g.const_i64(&[2]), g.const_i64(&[4]));
                    let bc = g.node("Slice", &format!("{name}/bc"), &[&s0, &z, &two], vec![]);
                    let hw = g.node("Slice", &format!("{name}/hw"), &[&s1, &two, &four], vec![]);
                    g.node("Concat", &format!("{name}/sizes"), &[&bc, &hw], vec![("axis", Attr::Int(0))])
                }
            };
            vec![g.node("Resize", name, &[x, &roi, "", &sizes], resize_attrs())]
        }
        Op::Concat => {
            let refs: Vec<&str> = xs.iter().map(String::as_str).collect();
            vec![g.node("Concat", name, &refs, vec![("axis", Attr::Int(1))])]
        }
        Op::Split { sizes } => {
            let split = g.const_i64(sizes);
            g.node_n("Split", name, &[x, &split], sizes.len(), vec![("axis", Attr::Int(1))])
        }
        Op::Add => {
            // Left to right, as the forward pass sums.
            let mut acc = xs[0].clone();
            for (k, y) in xs.iter().enumerate().skip(1) {
                let n = if xs.len() == 2 { name.to_string() } else { format!("{name}/add{k}") };
                acc = g.node("Add", &n, &[&acc, y], vec![]);
            }
            vec![acc]
        }
        Op::Detect(_) => unreachable!("Detect is lowered by decode"),
        Op::AppendCoeffs => unreachable!("AppendCoeffs is lowered with the output name"),
    })
}

fn resize_attrs() -> Vec<(&'static str, Attr)> {
    vec![("mode", Attr::Str("nearest".into())), ("coordinate_transformation_mode", Attr::Str("asymmetric".into())), ("nearest_mode", Attr::Str("floor".into()))]
}

fn conv(g: &mut OnnxBuilder, node: &Node, c: &Conv2d, x: &str, qdq: &mut QdqEmitter) -> Result<String> {
    let name = node.name.as_str();
    let ws = c.weight.size();
    let w = g.init_f32(&format!("{}.weight", c.prefix), &ws, &tensor_f32(&c.weight)?);
    let w = qdq.weight(g, &w, node.quant.weight, ws[0], name)?;
    let mut inputs = vec![x.to_string(), w];
    if let Some(b) = &c.bias {
        inputs.push(g.init_f32(&format!("{}.bias", c.prefix), &[ws[0]], &tensor_f32(b)?));
    }
    let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let y = g.node(
        "Conv",
        name,
        &refs,
        vec![
            ("kernel_shape", Attr::Ints(vec![ws[2], ws[3]])),
            ("strides", Attr::Ints(vec![c.stride; 2])),
            ("pads", pads(c.padding)),
            ("dilations", Attr::Ints(vec![c.dilation; 2])),
            ("group", Attr::Int(c.groups)),
        ],
    );
    Ok(match c.act {
        Activation::SiLU => {
            let s = g.node("Sigmoid", &format!("{name}/silu_sigmoid"), &[&y], vec![]);
            g.node("Mul", &format!("{name}/silu"), &[&y, &s], vec![])
        }
        Activation::ReLU => g.node("Relu", &format!("{name}/act"), &[&y], vec![]),
        Activation::LeakyReLU(slope) => g.node("LeakyRelu", &format!("{name}/act"), &[&y], vec![("alpha", Attr::Float(slope as f32))]),
        Activation::Identity => y,
    })
}
