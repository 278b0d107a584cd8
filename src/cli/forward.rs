//! `yolo-qat forward`: the fused model on a tensor from a file.

use super::parse_device;
use super::validate;
use crate::detector::load;
use crate::util::check_output;
use anyhow::{anyhow, bail, Result};
use std::path::PathBuf;
use tch::{Kind, Tensor};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    weights: PathBuf,
    /// safetensors file holding the input (B, 3, H, W): floats in [0, 1], or uint8 pixels
    /// (0-255, divided by 255 as upstream's loaders do). H and W multiples of the stride.
    #[arg(long)]
    input: PathBuf,
    /// Name of the input tensor in that file.
    #[arg(long, default_value = "input")]
    key: String,
    /// Where to write `output`, `head.0..2` (`output_aux` for dual heads, `proto` for
    /// segmentation heads). Replaced atomically if it is a regular file; a symlink is written
    /// through; a folder, device or FIFO, or one of the inputs, is refused.
    #[arg(long)]
    output: PathBuf,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Also write every top-level layer's output as `layer.I` (for comparing with other runtimes).
    #[arg(long)]
    layers: bool,
}

pub fn run(a: Args) -> Result<()> {
    check_output("--output", &a.output, &[("--weights", &a.weights), ("--input", &a.input)])?;
    let device = parse_device(&a.device)?;
    let mut model = load(&a.weights)?;
    model.to(device, Kind::Float);
    let inputs = Tensor::read_safetensors(&a.input).map_err(|e| anyhow!("{}: cannot read safetensors: {e}", a.input.display()))?;
    let x = inputs.into_iter().find(|(k, _)| *k == a.key).ok_or_else(|| anyhow!("{}: no tensor named `{}` (see --key)", a.input.display(), a.key))?.1;
    let x = input_image(x, validate::max_stride(&model)).map_err(|e| anyhow!("{}: `{}` {e}", a.input.display(), a.key))?;
    let x = x.to_device(device);
    let g = &model.graph;
    let mut keep = vec![g.output];
    keep.extend(&g.heads);
    keep.extend(g.output_aux);
    keep.extend(g.proto);
    let layer_outs: Vec<(usize, _)> =
        if a.layers { g.layers.iter().enumerate().filter(|(_, l)| l.outputs.len() == 1).map(|(i, l)| (i, l.outputs[0])).collect() } else { vec![] };
    keep.extend(layer_outs.iter().map(|&(_, v)| v));
    let mut vals = tch::no_grad(|| model.run(&x, &keep));
    let cpu = |t: Tensor| t.to_device(tch::Device::Cpu).contiguous();
    let layers: Vec<_> = layer_outs.iter().map(|&(i, v)| (format!("layer.{i}"), cpu(vals.get(v).shallow_clone()))).collect();
    let mut out = vec![("output".to_string(), cpu(vals.take(g.output)))];
    for (j, &h) in g.heads.iter().enumerate() {
        out.push((format!("head.{j}"), cpu(vals.take(h))));
    }
    if let Some(aux) = g.output_aux {
        out.push(("output_aux".to_string(), cpu(vals.take(aux))));
    }
    if let Some(p) = g.proto {
        out.push(("proto".to_string(), cpu(vals.take(p))));
    }
    out.extend(layers);

    crate::util::write_safetensors_atomic(&a.output, &out)?;
    println!("wrote {} ({})", a.output.display(), out.iter().map(|(k, t)| format!("{k} {:?}", t.size())).collect::<Vec<_>>().join(", "));
    Ok(())
}

/// The input as float (B, 3, H, W) in [0, 1]: uint8 pixels are scaled by 1/255, other
/// integer kinds refused; B >= 1, H and W positive multiples of the model's largest stride.
fn input_image(x: Tensor, stride: usize) -> Result<Tensor> {
    let s = x.size();
    if s.len() != 4 || s[0] < 1 || s[1] != 3 {
        bail!("has shape {s:?}; expected (B, 3, H, W) with B >= 1");
    }
    for (what, v) in [("H", s[2]), ("W", s[3])] {
        validate::imgsz(&format!("has {what}"), v as usize, stride).map_err(|e| anyhow!("with shape {s:?} {e}"))?;
    }
    match x.kind() {
        Kind::Uint8 => Ok(x.to_kind(Kind::Float) / 255.0),
        Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16 => Ok(x.to_kind(Kind::Float)),
        k => bail!("is {k:?}; expected float pixels in [0, 1] or uint8 pixels"),
    }
}
