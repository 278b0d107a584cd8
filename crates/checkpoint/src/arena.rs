//! The object arena a pickle builds, and its conversion to an owned tree.
//!
//! Pickle objects are shared and mutable: a dict is memoized empty, fetched
//! back by reference, and filled later by SETITEMS; a module is memoized and
//! only then given its state by BUILD. So the unpickler works on an arena of
//! nodes addressed by index, and the memo and stack hold indices. The tree
//! is made once the pickle has run.

use std::collections::HashMap;
use std::sync::Arc;

use super::error::ErrorKind;
use super::tensor::{DType, RawTensor};
use super::value::{Object, Value};

pub type Id = usize;

/// Nesting deeper than this is refused (a YOLO checkpoint needs about 40).
const MAX_DEPTH: usize = 256;
/// Shared nodes are copied into every place that refers to them, so a small
/// pickle can describe an exponentially large tree; this caps the copying.
/// One unit per node, plus one per 32 bytes of string or bytes.
const MAX_TREE_COST: u64 = 8 << 20;

#[derive(Debug)]
pub enum Node {
    None,
    Bool(bool),
    Int(i64),
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Id>),
    Tuple(Vec<Id>),
    /// Entries as set, duplicates included; the last one wins in the tree.
    Dict(Vec<(Id, Id)>),
    Set(Vec<Id>),
    Global(String),
    Object {
        class: String,
        /// The argument tuple.
        args: Id,
        state: Option<Id>,
    },
    Storage {
        dtype: DType,
        key: String,
        numel: usize,
    },
    Tensor(Arc<RawTensor>),
}

impl Node {
    pub fn kind(&self) -> &'static str {
        match self {
            Node::None => "None",
            Node::Bool(_) => "bool",
            Node::Int(_) | Node::BigInt(_) => "int",
            Node::Float(_) => "float",
            Node::Str(_) => "str",
            Node::Bytes(_) => "bytes",
            Node::List(_) => "list",
            Node::Tuple(_) => "tuple",
            Node::Dict(_) => "dict",
            Node::Set(_) => "set",
            Node::Global(_) => "global",
            Node::Object { .. } => "object",
            Node::Storage { .. } => "storage",
            Node::Tensor(_) => "tensor",
        }
    }
}

#[derive(Debug, Default)]
pub struct Arena {
    nodes: Vec<Node>,
}

impl Arena {
    pub fn add(&mut self, node: Node) -> Id {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// Ids only come from `add`, so they are always in range; the fallback
    /// keeps that an invariant rather than a possible panic.
    pub fn get(&self, id: Id) -> &Node {
        self.nodes.get(id).unwrap_or(&Node::None)
    }

    pub fn get_mut(&mut self, id: Id) -> Option<&mut Node> {
        self.nodes.get_mut(id)
    }

    /// Copies the graph under `root` into an owned tree.
    pub fn to_value(&self, root: Id) -> Result<Value, ErrorKind> {
        self.to_value_within(root, MAX_TREE_COST)
    }

    fn to_value_within(&self, root: Id, max_cost: u64) -> Result<Value, ErrorKind> {
        let mut builder = TreeBuilder { graph: self, on_path: vec![false; self.nodes.len()], cost: 0, max_cost };
        builder.build(root, 0)
    }
}

struct TreeBuilder<'a> {
    graph: &'a Arena,
    on_path: Vec<bool>,
    cost: u64,
    max_cost: u64,
}

impl TreeBuilder<'_> {
    fn build(&mut self, id: Id, depth: usize) -> Result<Value, ErrorKind> {
        if depth > MAX_DEPTH {
            return Err(graph_error(format!("nests deeper than {MAX_DEPTH} levels")));
        }
        if self.on_path.get(id).copied().unwrap_or(false) {
            return Err(graph_error("contains a reference cycle".into()));
        }
        self.charge(self.graph.get(id))?;
        if let Some(flag) = self.on_path.get_mut(id) {
            *flag = true;
        }
        let value = self.build_node(id, depth + 1);
        if let Some(flag) = self.on_path.get_mut(id) {
            *flag = false;
        }
        value
    }

    fn charge(&mut self, node: &Node) -> Result<(), ErrorKind> {
        let payload = match node {
            Node::Str(s) => s.len(),
            Node::Bytes(b) | Node::BigInt(b) => b.len(),
            _ => 0,
        };
        self.cost += 1 + payload as u64 / 32;
        if self.cost > self.max_cost {
            return Err(graph_error("expands to too many objects".into()));
        }
        Ok(())
    }

    fn build_node(&mut self, id: Id, depth: usize) -> Result<Value, ErrorKind> {
        Ok(match self.graph.get(id) {
            Node::None => Value::None,
            Node::Bool(b) => Value::Bool(*b),
            Node::Int(i) => Value::Int(*i),
            Node::BigInt(b) => Value::BigInt(b.clone()),
            Node::Float(f) => Value::Float(*f),
            Node::Str(s) => Value::Str(s.clone()),
            Node::Bytes(b) => Value::Bytes(b.clone()),
            Node::List(items) => Value::List(self.build_all(items, depth)?),
            Node::Tuple(items) => Value::Tuple(self.build_all(items, depth)?),
            Node::Set(items) => Value::Set(self.build_all(items, depth)?),
            Node::Dict(entries) => Value::Dict(self.build_dict(entries, depth)?),
            Node::Global(name) => Value::Global(name.clone()),
            Node::Object { class, args, state } => Value::Object(Box::new(Object {
                class: class.clone(),
                args: match self.build(*args, depth)? {
                    Value::Tuple(items) => items,
                    other => vec![other],
                },
                state: state.map(|s| self.build(s, depth)).transpose()?,
            })),
            Node::Storage { dtype, key, numel } => Value::Storage { dtype: *dtype, key: key.clone(), numel: *numel },
            Node::Tensor(t) => Value::Tensor(Arc::clone(t)),
        })
    }

    fn build_all(&mut self, ids: &[Id], depth: usize) -> Result<Vec<Value>, ErrorKind> {
        ids.iter().map(|&id| self.build(id, depth)).collect()
    }

    /// Python dict semantics: a key set twice keeps its first position and
    /// its last value.
    fn build_dict(&mut self, entries: &[(Id, Id)], depth: usize) -> Result<Vec<(Value, Value)>, ErrorKind> {
        let mut out: Vec<(Value, Value)> = Vec::with_capacity(entries.len());
        let mut seen: HashMap<HashKey, usize> = HashMap::new();
        for &(k, v) in entries {
            let key = self.build(k, depth)?;
            let value = self.build(v, depth)?;
            match HashKey::of(&key) {
                Some(hk) => match seen.get(&hk) {
                    Some(&at) => {
                        if let Some(slot) = out.get_mut(at) {
                            slot.1 = value;
                        }
                    }
                    None => {
                        seen.insert(hk, out.len());
                        out.push((key, value));
                    }
                },
                None => out.push((key, value)),
            }
        }
        Ok(out)
    }
}

/// Keys of the hashable kinds a checkpoint uses; other keys are kept as
/// they come.
#[derive(PartialEq, Eq, Hash)]
enum HashKey {
    None,
    Int(i64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<HashKey>),
}

impl HashKey {
    fn of(v: &Value) -> Option<HashKey> {
        Some(match v {
            Value::None => HashKey::None,
            // In Python True == 1, so they are the same key.
            Value::Bool(b) => HashKey::Int(i64::from(*b)),
            Value::Int(i) => HashKey::Int(*i),
            Value::Str(s) => HashKey::Str(s.clone()),
            Value::Bytes(b) => HashKey::Bytes(b.clone()),
            Value::Tuple(items) => HashKey::Tuple(items.iter().map(HashKey::of).collect::<Option<_>>()?),
            _ => return None,
        })
    }
}

fn graph_error(msg: String) -> ErrorKind {
    ErrorKind::PickleArena(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_sharing_is_capped() {
        // x = []; then 60 times: x = [x, x]
        let mut graph = Arena::default();
        let mut x = graph.add(Node::List(vec![]));
        for _ in 0..60 {
            x = graph.add(Node::List(vec![x, x]));
        }
        let err = graph.to_value_within(x, 10_000).unwrap_err();
        assert!(err.to_string().contains("too many objects"), "{err}");
    }

    #[test]
    fn shared_nodes_are_copied_and_duplicate_keys_merged() {
        let mut graph = Arena::default();
        let k = graph.add(Node::Str("k".into()));
        let (one, two) = (graph.add(Node::Int(1)), graph.add(Node::Int(2)));
        let d = graph.add(Node::Dict(vec![(k, one), (k, two)]));
        let root = graph.add(Node::Tuple(vec![d, d]));
        let dict = Value::Dict(vec![(Value::Str("k".into()), Value::Int(2))]);
        assert_eq!(graph.to_value(root).unwrap(), Value::Tuple(vec![dict.clone(), dict]));
    }
}
