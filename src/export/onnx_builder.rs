//! A small ONNX graph builder over the `onnx-protobuf` messages: unique value
//! names, typed initializers (raw little-endian data), cached constants,
//! attributes, graph inputs/outputs with fixed or symbolic dims, dead-node and
//! unused-initializer pruning, and the final `ModelProto` with opset / IR version.

use anyhow::{bail, Result};
use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::tensor_shape_proto::{dimension, Dimension};
use onnx_protobuf::type_proto;
use onnx_protobuf::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use protobuf::{EnumOrUnknown, MessageField};
use std::collections::{HashMap, HashSet};

/// ONNX element types used by the exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Elem {
    F32,
    I8,
    I32,
    I64,
    Bool,
}

impl Elem {
    pub fn code(self) -> i32 {
        (match self {
            Elem::F32 => DataType::FLOAT,
            Elem::I8 => DataType::INT8,
            Elem::I32 => DataType::INT32,
            Elem::I64 => DataType::INT64,
            Elem::Bool => DataType::BOOL,
        }) as i32
    }
}

/// A graph input/output dimension.
#[derive(Debug, Clone, PartialEq)]
pub enum Dim {
    Fixed(i64),
    Sym(String),
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Sym(s) => f.write_str(s),
        }
    }
}

/// A node attribute value.
#[derive(Debug, Clone)]
pub enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
    Str(String),
}

/// The IR version that goes with a default-domain opset (the ONNX release that introduced the opset).
pub fn ir_version_for_opset(opset: i64) -> i64 {
    match opset {
        ..=12 => 7,
        13 | 14 => 7,
        15..=18 => 8,
        19 | 20 => 9,
        _ => 10,
    }
}

#[derive(Default)]
pub struct OnnxBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    used: HashSet<String>,
    consts: HashMap<String, String>,
}

impl OnnxBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A value name not used yet, derived from `base`.
    pub fn fresh(&mut self, base: &str) -> String {
        let base = if base.is_empty() { "v" } else { base };
        if self.used.insert(base.to_string()) {
            return base.to_string();
        }
        let mut i = 1;
        loop {
            let n = format!("{base}_{i}");
            if self.used.insert(n.clone()) {
                return n;
            }
            i += 1;
        }
    }

    /// Reserves an exact name (graph inputs/outputs); fails if taken.
    pub fn reserve(&mut self, name: &str) -> Result<String> {
        if !self.used.insert(name.to_string()) {
            bail!("ONNX value name `{name}` is used twice");
        }
        Ok(name.to_string())
    }

    /// Adds a node with explicit output names; returns them.
    pub fn node_named(&mut self, op: &str, domain: &str, name: &str, inputs: &[&str], outputs: Vec<String>, attrs: Vec<(&str, Attr)>) -> Vec<String> {
        let node_name = self.fresh(&format!("node:{name}"));
        let node = NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.clone(),
            name: node_name.trim_start_matches("node:").to_string(),
            op_type: op.to_string(),
            domain: domain.to_string(),
            attribute: attrs.into_iter().map(|(k, v)| attribute(k, v)).collect(),
            ..Default::default()
        };
        self.nodes.push(node);
        outputs
    }

    /// Adds a node with `n` fresh outputs named after `name`.
    pub fn node_n(&mut self, op: &str, name: &str, inputs: &[&str], n: usize, attrs: Vec<(&str, Attr)>) -> Vec<String> {
        let base = if name.ends_with(&format!("/{op}")) { name.to_string() } else { format!("{name}/{op}") };
        let outs = (0..n).map(|i| self.fresh(&format!("{base}_output_{i}"))).collect();
        self.node_named(op, "", name, inputs, outs, attrs)
    }

    /// Adds a single-output node; returns its output name.
    pub fn node(&mut self, op: &str, name: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>) -> String {
        self.node_n(op, name, inputs, 1, attrs).remove(0)
    }

    fn push_init(&mut self, name: &str, elem: Elem, dims: &[i64], raw: Vec<u8>) -> String {
        let name = self.fresh(name);
        self.initializers.push(TensorProto { dims: dims.to_vec(), data_type: elem.code(), name: name.clone(), raw_data: raw, ..Default::default() });
        name
    }

    pub fn init_f32(&mut self, name: &str, dims: &[i64], data: &[f32]) -> String {
        debug_assert_eq!(dims.iter().product::<i64>() as usize, data.len());
        self.push_init(name, Elem::F32, dims, data.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    pub fn init_i64(&mut self, name: &str, dims: &[i64], data: &[i64]) -> String {
        self.push_init(name, Elem::I64, dims, data.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    pub fn init_i32(&mut self, name: &str, dims: &[i64], data: &[i32]) -> String {
        self.push_init(name, Elem::I32, dims, data.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    pub fn init_i8(&mut self, name: &str, dims: &[i64], data: &[i8]) -> String {
        self.push_init(name, Elem::I8, dims, data.iter().map(|&v| v as u8).collect())
    }

    fn cached(&mut self, key: String, make: impl FnOnce(&mut Self) -> String) -> String {
        if let Some(n) = self.consts.get(&key) {
            return n.clone();
        }
        let n = make(self);
        self.consts.insert(key, n.clone());
        n
    }

    /// A 1-D int64 constant (shared by every user of the same values).
    pub fn const_i64(&mut self, values: &[i64]) -> String {
        self.cached(format!("i64{values:?}"), |g| g.init_i64("const_i64", &[values.len() as i64], values))
    }

    /// A 0-D int64 constant.
    pub fn scalar_i64(&mut self, v: i64) -> String {
        self.cached(format!("i64 scalar {v}"), |g| g.init_i64("const_i64_scalar", &[], &[v]))
    }

    /// A float constant of the given shape filled with `v`.
    pub fn const_f32(&mut self, dims: &[i64], v: f32) -> String {
        self.cached(format!("f32{dims:?}={}", v.to_bits()), |g| {
            let n = dims.iter().product::<i64>().max(0) as usize;
            g.init_f32("const_f32", dims, &vec![v; n])
        })
    }

    /// An int8 zero point of the given length (0-D when `len` is None).
    pub fn zero_point_i8(&mut self, len: Option<i64>) -> String {
        self.cached(format!("zp{len:?}"), |g| match len {
            None => g.init_i8("zero_point", &[], &[0]),
            Some(n) => g.init_i8("zero_point", &[n], &vec![0; n as usize]),
        })
    }

    /// A cached constant under a caller-chosen key (e.g. a scale by its bits).
    pub fn cached_const(&mut self, key: String, make: impl FnOnce(&mut Self) -> String) -> String {
        self.cached(key, make)
    }

    pub fn add_input(&mut self, name: &str, elem: Elem, dims: &[Dim]) -> Result<String> {
        let n = self.reserve(name)?;
        self.inputs.push(value_info(&n, elem, dims));
        Ok(n)
    }

    /// Declares `name` (an existing value) a graph output.
    pub fn add_output(&mut self, name: &str, elem: Elem, dims: &[Dim]) {
        self.outputs.push(value_info(name, elem, dims));
    }

    pub fn nodes(&self) -> &[NodeProto] {
        &self.nodes
    }

    /// Removes nodes whose outputs nobody needs and initializers nobody reads.
    fn prune(&mut self) {
        let mut needed: HashSet<String> = self.outputs.iter().map(|o| o.name.clone()).collect();
        let mut keep = vec![false; self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate().rev() {
            if n.output.iter().any(|o| needed.contains(o)) {
                keep[i] = true;
                needed.extend(n.input.iter().filter(|s| !s.is_empty()).cloned());
            }
        }
        let mut k = keep.into_iter();
        self.nodes.retain(|_| k.next().unwrap_or(false));
        self.initializers.retain(|t| needed.contains(&t.name));
    }

    /// The finished model: pruned graph, opset imports, IR version, metadata.
    pub fn into_model(mut self, graph_name: &str, opset: i64, extra_domains: &[(&str, i64)], metadata: &[(String, String)]) -> ModelProto {
        self.prune();
        let graph = GraphProto {
            node: self.nodes,
            name: graph_name.to_string(),
            initializer: self.initializers,
            input: self.inputs,
            output: self.outputs,
            ..Default::default()
        };
        let mut opset_import = vec![OperatorSetIdProto { domain: String::new(), version: opset, ..Default::default() }];
        opset_import.extend(extra_domains.iter().map(|(d, v)| OperatorSetIdProto { domain: d.to_string(), version: *v, ..Default::default() }));
        ModelProto {
            ir_version: ir_version_for_opset(opset),
            opset_import,
            producer_name: "yolo-qat".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: MessageField::some(graph),
            metadata_props: metadata.iter().map(|(k, v)| StringStringEntryProto { key: k.clone(), value: v.clone(), ..Default::default() }).collect(),
            ..Default::default()
        }
    }
}

fn attribute(name: &str, v: Attr) -> AttributeProto {
    let mut a = AttributeProto { name: name.to_string(), ..Default::default() };
    let t = match v {
        Attr::Int(i) => {
            a.i = i;
            AttributeType::INT
        }
        Attr::Ints(is) => {
            a.ints = is;
            AttributeType::INTS
        }
        Attr::Float(f) => {
            a.f = f;
            AttributeType::FLOAT
        }
        Attr::Str(s) => {
            a.s = s.into_bytes();
            AttributeType::STRING
        }
    };
    a.type_ = EnumOrUnknown::new(t);
    a
}

pub fn value_info(name: &str, elem: Elem, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Fixed(n) => dimension::Value::DimValue(*n),
                Dim::Sym(s) => dimension::Value::DimParam(s.clone()),
            }),
            ..Default::default()
        })
        .collect();
    let tensor = type_proto::Tensor { elem_type: elem.code(), shape: MessageField::some(TensorShapeProto { dim, ..Default::default() }), ..Default::default() };
    ValueInfoProto {
        name: name.to_string(),
        type_: MessageField::some(TypeProto { value: Some(type_proto::Value::TensorType(tensor)), ..Default::default() }),
        ..Default::default()
    }
}

/// Reads a node attribute as an int.
pub fn attr_i(node: &NodeProto, name: &str) -> Option<i64> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.i)
}

pub fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.ints.clone())
}

pub fn attr_f(node: &NodeProto, name: &str) -> Option<f32> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.f)
}

pub fn attr_s(node: &NodeProto, name: &str) -> Option<String> {
    node.attribute.iter().find(|a| a.name == name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
}

/// An initializer's values as f64 (float, double, int8/32/64 from raw or typed storage).
pub fn tensor_values(t: &TensorProto) -> Option<Vec<f64>> {
    let raw = &t.raw_data;
    let dt = t.data_type;
    let from_raw = !raw.is_empty();
    Some(if dt == DataType::FLOAT as i32 {
        if from_raw {
            raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect()
        } else {
            t.float_data.iter().map(|&v| v as f64).collect()
        }
    } else if dt == DataType::DOUBLE as i32 {
        if from_raw {
            raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect()
        } else {
            t.double_data.clone()
        }
    } else if dt == DataType::INT8 as i32 {
        if from_raw {
            raw.iter().map(|&b| b as i8 as f64).collect()
        } else {
            t.int32_data.iter().map(|&v| v as f64).collect()
        }
    } else if dt == DataType::UINT8 as i32 {
        if from_raw {
            raw.iter().map(|&b| b as f64).collect()
        } else {
            t.int32_data.iter().map(|&v| v as f64).collect()
        }
    } else if dt == DataType::INT32 as i32 {
        if from_raw {
            raw.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect()
        } else {
            t.int32_data.iter().map(|&v| v as f64).collect()
        }
    } else if dt == DataType::INT64 as i32 {
        if from_raw {
            raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as f64).collect()
        } else {
            t.int64_data.iter().map(|&v| v as f64).collect()
        }
    } else {
        return None;
    })
}

/// Human name of an ONNX data type code.
pub fn dtype_name(code: i32) -> String {
    match <DataType as protobuf::Enum>::from_i32(code) {
        Some(DataType::FLOAT) => "float32".into(),
        Some(DataType::DOUBLE) => "float64".into(),
        Some(DataType::FLOAT16) => "float16".into(),
        Some(d) => format!("{d:?}").to_lowercase(),
        None => format!("type {code}"),
    }
}
