//! An upstream YOLOv9 checkpoint: the pickled `models.yolo.DetectionModel`
//! turned into its config, class names, strides and state dict.

use std::collections::BTreeMap;
use std::path::Path;

use super::archive::{read_file, Archive};
use super::error::{CheckpointError, ErrorKind};
use super::tensor::RawTensor;
use super::value::{Object, Value};

const DETECTION_MODEL: &str = "models.yolo.DetectionModel";
/// Upstream's segmentation models (`segment/train.py`) pickle a subclass of DetectionModel.
const SEGMENTATION_MODEL: &str = "models.yolo.SegmentationModel";
const BATCH_NORM: &str = "torch.nn.modules.batchnorm.BatchNorm2d";

/// What the reader takes out of an upstream checkpoint.
#[derive(Debug, Clone)]
pub struct UpstreamModel {
    /// The model's `yaml` attribute (the config it was built from).
    pub yaml: serde_yaml::Value,
    /// Class names by index.
    pub names: Vec<String>,
    pub nc: usize,
    /// Output strides of the detect layer, e.g. [8, 16, 32].
    pub stride: Vec<f32>,
    /// The state dict under upstream names (`model.3.cv1.conv.weight`).
    pub tensors: BTreeMap<String, RawTensor>,
    /// Module path (`model.3.cv1.bn`) -> eps of every BatchNorm2d.
    pub bn_eps: BTreeMap<String, f64>,
    /// Module path (`model.3`) -> class name without module (`ADown`).
    pub module_types: BTreeMap<String, String>,
}

pub fn read_upstream(path: &Path) -> Result<UpstreamModel, CheckpointError> {
    let name = path.display();
    let bytes = read_file(path).map_err(|k| CheckpointError::new(&name, k))?;
    read_upstream_bytes(&name.to_string(), &bytes)
}

/// As [`read_upstream`], for a checkpoint already in memory; `name` is used
/// in error messages.
pub fn read_upstream_bytes(name: &str, bytes: &[u8]) -> Result<UpstreamModel, CheckpointError> {
    let read = || -> Result<UpstreamModel, ErrorKind> {
        let top = Archive::open(bytes)?.unpickle()?;
        from_checkpoint(&top)
    };
    read().map_err(|k| CheckpointError::new(name, k))
}

/// Upstream's `attempt_load` takes `ckpt.get('ema') or ckpt['model']`.
pub fn from_checkpoint(top: &Value) -> Result<UpstreamModel, ErrorKind> {
    let model = top
        .get("ema")
        .filter(|v| !v.is_none())
        .or_else(|| top.get("model"))
        .and_then(Value::as_object)
        .filter(|o| o.class == DETECTION_MODEL || o.class == SEGMENTATION_MODEL)
        .ok_or(ErrorKind::NotYolo)?;
    let yaml = to_yaml(model.attr("yaml").ok_or_else(|| model_error("no 'yaml' attribute"))?, "yaml")?;
    let names = class_names(model.attr("names").ok_or_else(|| model_error("no 'names' attribute"))?)?;
    let nc = class_count(model, &yaml, names.len())?;
    let stride = model.attr("stride").and_then(Value::as_tensor).ok_or_else(|| model_error("'stride' is not a tensor"))?.to_f32_vec();
    let mut out = UpstreamModel { yaml, names, nc, stride, tensors: BTreeMap::new(), bn_eps: BTreeMap::new(), module_types: BTreeMap::new() };
    collect_children(model, "", &mut out)?;
    Ok(out)
}

/// `nc`: the model attribute train.py sets, else the config's.
fn class_count(model: &Object, yaml: &serde_yaml::Value, names: usize) -> Result<usize, ErrorKind> {
    let from_attr = model.attr("nc").and_then(Value::as_int);
    let from_yaml = yaml.get("nc").and_then(serde_yaml::Value::as_i64);
    match from_attr.or(from_yaml) {
        Some(n) => usize::try_from(n).map_err(|_| model_error(format!("negative class count {n}"))),
        None => Ok(names),
    }
}

/// `names`: a list, or a dict {index: name}, sorted by index.
fn class_names(v: &Value) -> Result<Vec<String>, ErrorKind> {
    if let Some(items) = v.as_seq() {
        return items.iter().map(name_text).collect();
    }
    let entries = v.as_dict().ok_or_else(|| model_error(format!("'names' is a {}, not a list or dict", v.kind())))?;
    let mut indexed = entries
        .iter()
        .map(|(k, name)| {
            let index = k.as_int().ok_or_else(|| model_error(format!("'names' has a {} key", k.kind())))?;
            Ok((index, name_text(name)?))
        })
        .collect::<Result<Vec<_>, ErrorKind>>()?;
    indexed.sort_by_key(|(i, _)| *i);
    Ok(indexed.into_iter().map(|(_, n)| n).collect())
}

fn name_text(v: &Value) -> Result<String, ErrorKind> {
    match v {
        Value::Str(s) => Ok(s.clone()),
        Value::Int(i) => Ok(i.to_string()),
        other => Err(model_error(format!("a class name is a {}", other.kind()))),
    }
}

/// Plain data to YAML; `what` names the place for errors.
fn to_yaml(v: &Value, what: &str) -> Result<serde_yaml::Value, ErrorKind> {
    use serde_yaml::Value as Y;
    Ok(match v {
        Value::None => Y::Null,
        Value::Bool(b) => Y::Bool(*b),
        Value::Int(i) => Y::Number((*i).into()),
        Value::Float(f) => Y::Number((*f).into()),
        Value::Str(s) => Y::String(s.clone()),
        Value::List(items) | Value::Tuple(items) => Y::Sequence(items.iter().map(|i| to_yaml(i, what)).collect::<Result<_, _>>()?),
        Value::Dict(entries) => {
            let mut map = serde_yaml::Mapping::new();
            for (k, v) in entries {
                map.insert(to_yaml(k, what)?, to_yaml(v, what)?);
            }
            Y::Mapping(map)
        }
        other => return Err(model_error(format!("'{what}' holds a {}", other.kind()))),
    })
}

/// Walks `_modules` of `module` (at `path`), recording each child.
fn collect_children(module: &Object, path: &str, out: &mut UpstreamModel) -> Result<(), ErrorKind> {
    let Some(children) = module.attr("_modules") else {
        return Ok(());
    };
    let entries = children.as_dict().ok_or_else(|| model_error(format!("'{path}' has non-dict _modules")))?;
    for (name, child) in entries {
        let name = name.as_str().ok_or_else(|| model_error(format!("'{path}' has a module with a {} name", name.kind())))?;
        let child_path = join(path, name);
        match child {
            Value::None => {}
            Value::Object(obj) => collect_module(obj, &child_path, out)?,
            other => {
                return Err(model_error(format!("module '{child_path}' is a {}", other.kind())));
            }
        }
    }
    Ok(())
}

fn collect_module(module: &Object, path: &str, out: &mut UpstreamModel) -> Result<(), ErrorKind> {
    out.module_types.insert(path.to_string(), module.short_class().to_string());
    if module.class == BATCH_NORM {
        let eps = module.attr("eps").and_then(Value::as_f64).ok_or_else(|| model_error(format!("BatchNorm2d '{path}' has no eps")))?;
        out.bn_eps.insert(path.to_string(), eps);
    }
    let non_persistent = module.attr("_non_persistent_buffers_set").and_then(Value::as_seq).unwrap_or_default();
    for field in ["_parameters", "_buffers"] {
        let Some(entries) = module.attr(field).and_then(Value::as_dict) else {
            continue;
        };
        for (name, value) in entries {
            let Some(name) = name.as_str() else {
                return Err(model_error(format!("'{path}' has a {field} key that is not a str")));
            };
            let skip = name == "num_batches_tracked" || value.is_none() || non_persistent.iter().any(|n| n.as_str() == Some(name));
            if skip {
                continue;
            }
            let full = join(path, name);
            let tensor = value.as_tensor().ok_or_else(|| model_error(format!("'{full}' is a {}, not a tensor", value.kind())))?;
            out.tensors.insert(full, tensor.clone());
        }
    }
    collect_children(module, path, out)
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn model_error(msg: impl Into<String>) -> ErrorKind {
    ErrorKind::Model(msg.into())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::tensor::DType;
    use super::*;

    fn s(text: &str) -> Value {
        Value::Str(text.into())
    }

    fn detection_model(name: &str) -> Value {
        let stride = RawTensor { dtype: DType::F32, shape: vec![1], data: 8f32.to_le_bytes().to_vec() };
        let state = Value::Dict(vec![
            (s("yaml"), Value::Dict(vec![(s("nc"), Value::Int(1))])),
            (s("names"), Value::List(vec![s(name)])),
            (s("stride"), Value::Tensor(Arc::new(stride))),
            (s("_modules"), Value::Dict(vec![])),
        ]);
        Value::Object(Box::new(Object { class: DETECTION_MODEL.into(), args: vec![], state: Some(state) }))
    }

    #[test]
    fn ema_is_preferred_unless_none() {
        let both = Value::Dict(vec![(s("model"), detection_model("model")), (s("ema"), detection_model("ema"))]);
        assert_eq!(from_checkpoint(&both).unwrap().names, ["ema"]);
        let no_ema = Value::Dict(vec![(s("model"), detection_model("model")), (s("ema"), Value::None)]);
        let m = from_checkpoint(&no_ema).unwrap();
        assert_eq!((m.names, m.nc, m.stride), (vec!["model".to_string()], 1, vec![8.0]));
    }

    #[test]
    fn other_objects_are_not_yolo() {
        let top = Value::Dict(vec![(s("model"), s("weights"))]);
        assert!(matches!(from_checkpoint(&top), Err(ErrorKind::NotYolo)));
        assert!(matches!(from_checkpoint(&Value::None), Err(ErrorKind::NotYolo)));
    }
}
