//! The upstream model yaml (`models/detect/*.yaml`, or the `yaml` attribute
//! embedded in a checkpoint), parsed into plain structs.

use anyhow::{anyhow, bail, Context, Result};
use serde_yaml::Value;
use std::path::Path;

/// Activation used by every `Conv` / `RepConvN` block (upstream's `activation` key).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    SiLU,
    ReLU,
    LeakyReLU(f64),
    Identity,
}

impl Activation {
    /// Parses upstream's python expression, e.g. `nn.ReLU()`, `nn.LeakyReLU(0.1)`.
    pub fn parse(expr: &str) -> Result<Self> {
        let e = expr.trim().trim_start_matches("torch.").trim_start_matches("nn.");
        let (name, arg) = match e.find('(') {
            Some(i) => (&e[..i], e[i + 1..].trim_end_matches(')').trim()),
            None => (e, ""),
        };
        match name {
            "SiLU" => Ok(Activation::SiLU),
            "ReLU" => Ok(Activation::ReLU),
            "Identity" => Ok(Activation::Identity),
            "LeakyReLU" => {
                let arg = arg.split('=').next_back().unwrap_or("").trim();
                let slope = if arg.is_empty() { 0.01 } else { arg.parse().map_err(|_| anyhow!("bad LeakyReLU slope in `{expr}`"))? };
                Ok(Activation::LeakyReLU(slope))
            }
            _ => bail!("unsupported activation `{expr}` (SiLU, ReLU, LeakyReLU are supported)"),
        }
    }

    pub fn name(&self) -> String {
        match self {
            Activation::SiLU => "SiLU".into(),
            Activation::ReLU => "ReLU".into(),
            Activation::LeakyReLU(s) => format!("LeakyReLU({s})"),
            Activation::Identity => "Identity".into(),
        }
    }
}

/// One row of `backbone` / `head`: `[from, repeats, module, args]`.
#[derive(Debug, Clone)]
pub struct LayerSpec {
    pub from: Vec<i64>,
    pub from_list: bool,
    pub repeats: i64,
    pub module: String,
    pub args: Vec<Value>,
}

#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub nc: usize,
    pub depth_multiple: f64,
    pub width_multiple: f64,
    pub anchors: usize,
    pub activation: Activation,
    pub layers: Vec<LayerSpec>,
    /// The yaml as read, kept so that what we write carries the same architecture.
    pub raw: Value,
}

impl ModelConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let raw: Value = serde_yaml::from_str(&text).map_err(|e| anyhow!("{}: not a yaml file: {e}", path.display()))?;
        Self::from_value(raw).map_err(|e| anyhow!("{}: {e}", path.display()))
    }

    pub fn from_value(raw: Value) -> Result<Self> {
        let nc = raw.get("nc").and_then(Value::as_u64).ok_or_else(|| anyhow!("model yaml has no integer `nc`"))? as usize;
        if nc == 0 {
            bail!("nc 0: a detection model needs at least one class");
        }
        let num = |k: &str, d: f64| raw.get(k).and_then(Value::as_f64).unwrap_or(d);
        for k in ["depth_multiple", "width_multiple"] {
            let v = num(k, 1.0);
            if !(v.is_finite() && v > 0.0) {
                bail!("{k} {v}: must be a positive number");
            }
        }
        let anchors = match raw.get("anchors") {
            Some(Value::Number(n)) => n.as_u64().unwrap_or(3) as usize,
            Some(Value::Sequence(s)) => s.first().and_then(Value::as_sequence).map_or(3, |a| a.len() / 2),
            _ => 3,
        };
        let activation = match raw.get("activation").and_then(Value::as_str) {
            Some(a) => Activation::parse(a)?,
            None => Activation::SiLU,
        };
        let mut layers = Vec::new();
        for part in ["backbone", "head"] {
            let rows = raw.get(part).and_then(Value::as_sequence).ok_or_else(|| anyhow!("model yaml has no `{part}` list"))?;
            for (i, row) in rows.iter().enumerate() {
                layers.push(parse_row(row, nc).with_context(|| format!("{part} row {i}"))?);
            }
        }
        Ok(ModelConfig { nc, depth_multiple: num("depth_multiple", 1.0), width_multiple: num("width_multiple", 1.0), anchors, activation, layers, raw })
    }

    /// The yaml with `nc` replaced, as upstream does when the data set has another class count.
    pub fn with_nc(&self, nc: usize) -> Result<Self> {
        let mut raw = self.raw.clone();
        if let Value::Mapping(m) = &mut raw {
            m.insert(Value::from("nc"), Value::from(nc as u64));
        }
        Self::from_value(raw)
    }
}

fn parse_row(row: &Value, nc: usize) -> Result<LayerSpec> {
    let cols = row.as_sequence().filter(|c| c.len() == 4).ok_or_else(|| anyhow!("expected [from, number, module, args]"))?;
    let (from, from_list) = match &cols[0] {
        Value::Number(n) => (vec![n.as_i64().ok_or_else(|| anyhow!("bad `from`"))?], false),
        Value::Sequence(s) => (s.iter().map(|v| v.as_i64().ok_or_else(|| anyhow!("bad `from` entry"))).collect::<Result<_>>()?, true),
        _ => bail!("bad `from` {:?}", cols[0]),
    };
    let repeats = cols[1].as_i64().ok_or_else(|| anyhow!("bad repeat count"))?;
    let module = cols[2].as_str().ok_or_else(|| anyhow!("bad module name"))?.to_string();
    let args = match &cols[3] {
        Value::Sequence(s) => s.iter().map(|a| resolve_arg(a, nc)).collect(),
        Value::Null => Vec::new(),
        _ => bail!("module args must be a list"),
    };
    Ok(LayerSpec { from, from_list, repeats, module, args })
}

/// Upstream `eval`s string args: `nc` becomes the class count and `None` null.
fn resolve_arg(v: &Value, nc: usize) -> Value {
    match v.as_str() {
        Some("nc") => Value::from(nc as u64),
        Some("None") => Value::Null,
        _ => v.clone(),
    }
}

/// Argument `i` as an integer, or `default` when absent / null.
pub fn arg_i64(args: &[Value], i: usize, default: Option<i64>) -> Result<i64> {
    match args.get(i) {
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| anyhow!("argument {i} is not an integer")),
        Some(Value::Bool(b)) => Ok(*b as i64),
        Some(Value::Null) | None => default.ok_or_else(|| anyhow!("missing argument {i}")),
        Some(v) => bail!("argument {i} is not an integer: {v:?}"),
    }
}

pub fn arg_list(args: &[Value], i: usize) -> Result<Vec<i64>> {
    args.get(i)
        .and_then(Value::as_sequence)
        .ok_or_else(|| anyhow!("argument {i} must be a list"))?
        .iter()
        .map(|v| v.as_i64().ok_or_else(|| anyhow!("argument {i} must be a list of integers")))
        .collect()
}

/// Upstream `make_divisible(x, divisor)`: ceil to a multiple.
pub fn make_divisible(x: f64, divisor: i64) -> i64 {
    ((x / divisor as f64).ceil() as i64) * divisor
}
