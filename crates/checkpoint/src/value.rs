//! The owned tree an unpickled checkpoint turns into.

use std::sync::Arc;

use super::tensor::{DType, RawTensor};

/// A Python value as the pickle described it. Nothing was imported or run:
/// instances of classes outside the small allow-list of the unpickler stay
/// [`Object`]s holding the class name and the data pickled for them.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer too wide for i64: little-endian two's complement bytes.
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    /// Entries in insertion order, keys unique.
    Dict(Vec<(Value, Value)>),
    Set(Vec<Value>),
    /// A class or function referenced by name, `module.Name`.
    Global(String),
    Object(Box<Object>),
    /// A storage pickled on its own, outside any tensor.
    Storage {
        dtype: DType,
        key: String,
        numel: usize,
    },
    Tensor(Arc<RawTensor>),
}

/// An instance of a class the unpickler does not interpret.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// `module.Name`, e.g. `models.yolo.DetectionModel`.
    pub class: String,
    /// The arguments given to the class (REDUCE / NEWOBJ).
    pub args: Vec<Value>,
    /// What BUILD gave it: for plain Python objects, the `__dict__`.
    pub state: Option<Value>,
}

impl Object {
    /// The class name without its module: `DetectionModel`.
    pub fn short_class(&self) -> &str {
        self.class.rsplit('.').next().unwrap_or(&self.class)
    }

    /// An attribute from the pickled `__dict__`. Objects with `__slots__`
    /// pickle their state as `(dict, slots)`; both halves are searched.
    pub fn attr(&self, name: &str) -> Option<&Value> {
        match self.state.as_ref()? {
            Value::Tuple(parts) => parts.iter().find_map(|p| p.get(name)),
            state => state.get(name),
        }
    }
}

impl Value {
    /// A short name of the variant, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Dict(_) => "dict",
            Value::Set(_) => "set",
            Value::Global(_) => "global",
            Value::Object(_) => "object",
            Value::Storage { .. } => "storage",
            Value::Tensor(_) => "tensor",
        }
    }

    pub fn is_none(&self) -> bool {
        matches!(self, Value::None)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// Items of a list, tuple or set.
    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::List(v) | Value::Tuple(v) | Value::Set(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_dict(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    pub fn as_tensor(&self) -> Option<&RawTensor> {
        match self {
            Value::Tensor(t) => Some(t),
            _ => None,
        }
    }

    /// The value under a string key of a dict.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_dict()?.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
    }
}
