use super::parse_device;
use crate::checkpoint::load::load;
use anyhow::{anyhow, Result};
use std::path::PathBuf;
use tch::{Kind, Tensor};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    weights: PathBuf,
    /// safetensors file holding the input (B, 3, H, W), values in [0, 1].
    #[arg(long)]
    input: PathBuf,
    /// Name of the input tensor in that file.
    #[arg(long, default_value = "input")]
    key: String,
    /// Where to write `output`, `head.0..2` (`output_aux` for dual heads, `proto` for segmentation heads).
    #[arg(long)]
    output: PathBuf,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Also write every top-level layer's output as `layer.I` (for comparing with other runtimes).
    #[arg(long)]
    layers: bool,
}

pub fn run(a: Args) -> Result<()> {
    let device = parse_device(&a.device)?;
    let mut model = load(&a.weights)?;
    model.to(device, Kind::Float);
    let inputs = Tensor::read_safetensors(&a.input).map_err(|e| anyhow!("{}: cannot read safetensors: {e}", a.input.display()))?;
    let x = inputs.into_iter().find(|(k, _)| *k == a.key).ok_or_else(|| anyhow!("{}: no tensor named `{}` (see --key)", a.input.display(), a.key))?.1;
    let s = x.size();
    if s.len() != 4 || s[1] != 3 || s[2] % 32 != 0 || s[3] % 32 != 0 {
        return Err(anyhow!("{}: `{}` has shape {s:?}; expected (B, 3, H, W) with H and W multiples of 32", a.input.display(), a.key));
    }
    let x = x.to_device(device).to_kind(Kind::Float);
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
