//! Upstream `parse_model`: the yaml's rows become blocks, in order.

use super::blocks;
use super::builder::{Builder, ConvGeom, Heads};
use super::config::{arg_i64, arg_list, make_divisible, ModelConfig};
use super::detect::{detect_branch, BoxBranch};
use super::graph::{Graph, Layer, ValueId};
use super::segment::{dsegment, dual_dsegment, segment};
use super::weights::WeightSource;
use anyhow::{anyhow, bail, Context, Result};

/// Builds the fused model graph for `cfg`, taking parameters from `src`.
pub fn build(cfg: &ModelConfig, src: &mut dyn WeightSource) -> Result<Graph> {
    let mut b = Builder::new(src, cfg.activation);
    let input = b.new_value(3, 1);
    let mut layers: Vec<Layer> = Vec::new();
    let mut heads = None;
    for (i, spec) in cfg.layers.iter().enumerate() {
        b.layer = i;
        let name = format!("model.{i}");
        let from: Vec<Vec<ValueId>> =
            spec.from.iter().map(|&f| resolve_from(&layers, input, i, f)).collect::<Result<_>>().with_context(|| format!("layer {i} ({})", spec.module))?;
        if spec.repeats != 1 && !matches!(spec.module.as_str(), "Concat" | "nn.Upsample" | "Silence") {
            bail!("layer {i} ({}): repeat count {} is not supported", spec.module, spec.repeats);
        }
        let outputs = build_layer(&mut b, cfg, &name, spec.module.as_str(), &spec.args, &from, &mut heads)
            .with_context(|| format!("layer {i} ({} {:?})", spec.module, spec.args))?;
        layers.push(Layer { index: i, module: spec.module.clone(), from: spec.from.clone(), outputs });
    }
    let heads = heads.ok_or_else(|| anyhow!("the model has no detect or segment layer (Detect, DDetect, DualDDetect, Segment, DSegment, DualDSegment)"))?;
    Ok(b.finish(input, layers, heads, cfg.nc))
}

fn resolve_from(layers: &[Layer], input: ValueId, i: usize, f: i64) -> Result<Vec<ValueId>> {
    if f == -1 && i == 0 {
        return Ok(vec![input]);
    }
    let j = if f < 0 { i as i64 + f } else { f };
    if j < 0 || j as usize >= i {
        bail!("`from` index {f} does not name an earlier layer");
    }
    Ok(layers[j as usize].outputs.clone())
}

fn single(from: &[Vec<ValueId>]) -> Result<ValueId> {
    match from {
        [v] if v.len() == 1 => Ok(v[0]),
        _ => bail!("expects one single-tensor input"),
    }
}

fn scaled_c2(cfg: &ModelConfig, args: &[serde_yaml::Value]) -> Result<i64> {
    let c2 = arg_i64(args, 0, None)?;
    let no = (cfg.anchors * (cfg.nc + 5)) as i64;
    Ok(if c2 != no { make_divisible(c2 as f64 * cfg.width_multiple, 8) } else { c2 })
}

fn build_layer(
    b: &mut Builder,
    cfg: &ModelConfig,
    name: &str,
    module: &str,
    args: &[serde_yaml::Value],
    from: &[Vec<ValueId>],
    heads: &mut Option<Heads>,
) -> Result<Vec<ValueId>> {
    let one = |v: ValueId| Ok(vec![v]);
    match module {
        "Silence" => one(single(from)?),
        "Conv" => {
            let x = single(from)?;
            let c2 = scaled_c2(cfg, args)?;
            let k = arg_i64(args, 1, Some(1))?;
            let s = arg_i64(args, 2, Some(1))?;
            let mut geom = ConvGeom::new(c2, k, s).groups(arg_i64(args, 4, Some(1))?);
            if let Some(p) = args.get(3).and_then(serde_yaml::Value::as_i64) {
                geom = geom.pad(p);
            }
            one(b.conv(name, x, geom, true)?)
        }
        "AConv" => one(blocks::aconv(b, name, single(from)?, scaled_c2(cfg, args)?)?),
        "ADown" => one(blocks::adown(b, name, single(from)?, scaled_c2(cfg, args)?)?),
        "ELAN1" => {
            let (c3, c4) = (arg_i64(args, 1, None)?, arg_i64(args, 2, None)?);
            one(blocks::elan1(b, name, single(from)?, scaled_c2(cfg, args)?, c3, c4)?)
        }
        "RepNCSPELAN4" => {
            let (c3, c4, c5) = (arg_i64(args, 1, None)?, arg_i64(args, 2, None)?, arg_i64(args, 3, Some(1))?);
            one(blocks::rep_ncspelan4(b, name, single(from)?, scaled_c2(cfg, args)?, c3, c4, c5)?)
        }
        "SPPELAN" => one(blocks::sppelan(b, name, single(from)?, scaled_c2(cfg, args)?, arg_i64(args, 1, None)?)?),
        "nn.Upsample" => {
            let scale = arg_i64(args, 1, Some(2))?;
            if scale < 1 {
                bail!("scale factor {scale}: must be a positive integer");
            }
            if args.get(2).and_then(serde_yaml::Value::as_str).is_some_and(|m| m != "nearest") {
                bail!("only nearest upsampling is supported");
            }
            one(b.upsample(name, single(from)?, scale))
        }
        "Concat" => {
            let xs: Vec<ValueId> = from.iter().map(|v| single(std::slice::from_ref(v))).collect::<Result<_>>()?;
            one(b.concat(name, &xs))
        }
        "CBLinear" => {
            let c2s = arg_list(args, 0)?;
            blocks::cblinear(b, name, single(from)?, &c2s, arg_i64(args, 1, Some(1))?, arg_i64(args, 2, Some(1))?)
        }
        "CBFuse" => {
            let idx = arg_list(args, 0)?;
            let (last, parts) = from.split_last().ok_or_else(|| anyhow!("CBFuse needs inputs"))?;
            let picked: Vec<ValueId> = parts
                .iter()
                .zip(&idx)
                .map(|(outs, &k)| outs.get(k as usize).copied().ok_or_else(|| anyhow!("CBFuse index {k} out of range")))
                .collect::<Result<_>>()?;
            one(blocks::cbfuse(b, name, &picked, single(std::slice::from_ref(last))?))
        }
        "Detect" | "DDetect" | "DualDDetect" | "Segment" | "DSegment" | "DualDSegment" => {
            let xs: Vec<ValueId> = from.iter().map(|v| single(std::slice::from_ref(v))).collect::<Result<_>>()?;
            let h = head(b, cfg, name, module, args, &xs)?;
            let outs = std::iter::once(h.output).chain(h.proto).collect();
            *heads = Some(h);
            Ok(outs)
        }
        other => bail!("module `{other}` is not supported"),
    }
}

/// The detect layer: upstream's detection and segmentation heads.
fn head(b: &mut Builder, cfg: &ModelConfig, name: &str, module: &str, args: &[serde_yaml::Value], xs: &[ValueId]) -> Result<Heads> {
    let nc = cfg.nc as i64;
    let nm = || arg_i64(args, 1, Some(32));
    Ok(match module {
        "Detect" | "DDetect" => {
            let kind = if module == "Detect" { BoxBranch::Plain } else { BoxBranch::Grouped };
            let (output, maps) = detect_branch(b, name, xs, nc, kind, "cv2", "cv3", "dfl")?;
            Heads { output, output_aux: None, strides: strides(b, xs), maps, proto: None, nm: 0 }
        }
        "DualDDetect" => {
            let nl = xs.len() / 2;
            let (aux, _) = detect_branch(b, name, &xs[..nl], nc, BoxBranch::Grouped, "cv2", "cv3", "dfl")?;
            let (output, maps) = detect_branch(b, name, &xs[nl..], nc, BoxBranch::Grouped, "cv4", "cv5", "dfl2")?;
            Heads { output, output_aux: Some(aux), strides: strides(b, &xs[nl..]), maps, proto: None, nm: 0 }
        }
        "DSegment" => dsegment(b, name, xs, nc, nm()?)?,
        "DualDSegment" => dual_dsegment(b, name, xs, nc, nm()?)?,
        // parse_model scales Segment's prototype channels by the width multiple.
        "Segment" => segment(b, name, xs, nc, nm()?, make_divisible(arg_i64(args, 2, Some(256))? as f64 * cfg.width_multiple, 8))?,
        other => bail!("module `{other}` is not a detect head"),
    })
}

fn strides(b: &Builder, xs: &[ValueId]) -> Vec<f64> {
    xs.iter().map(|&x| b.value_stride[x] as f64).collect()
}
