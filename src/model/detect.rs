//! Upstream `Detect` / `DDetect` / `DualDDetect` (`models/yolo.py`): per level a box branch
//! and a class branch, concatenated into the raw head map, then decoded (DFL + dist2bbox +
//! sigmoid). `DDetect`'s box branch groups its last two convs by 4 and rounds its width to a
//! multiple of 4; `Detect`'s does neither.

use super::builder::{Builder, ConvGeom};
use super::config::make_divisible;
use super::graph::{Detect, ValueId};
use anyhow::Result;
use tch::{Kind, Tensor};

pub const REG_MAX: i64 = 16;

/// Which head's box branch: `DDetect`'s (grouped) or `Detect`'s (plain).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoxBranch {
    Grouped,
    Plain,
}

/// Builds one branch set (`cv2`/`cv3` or, for the dual main branch, `cv4`/`cv5`)
/// over `inputs` and returns (decoded output, raw maps).
#[allow(clippy::too_many_arguments)]
pub fn detect_branch(
    b: &mut Builder,
    name: &str,
    inputs: &[ValueId],
    nc: i64,
    kind: BoxBranch,
    box_cv: &str,
    cls_cv: &str,
    dfl: &str,
) -> Result<(ValueId, Vec<ValueId>)> {
    let c_first = b.channels[inputs[0]];
    let c2 = (c_first / 4).max(REG_MAX * 4).max(16);
    let (c2, groups) = match kind {
        BoxBranch::Grouped => (make_divisible(c2 as f64, 4), 4),
        BoxBranch::Plain => (c2, 1),
    };
    let c3 = c_first.max((nc * 2).min(128));
    let mut maps = Vec::new();
    for (i, &x) in inputs.iter().enumerate() {
        let bx = format!("{name}.{box_cv}.{i}");
        let y = b.conv(&format!("{bx}.0"), x, ConvGeom::new(c2, 3, 1), true)?;
        let y = b.conv(&format!("{bx}.1"), y, ConvGeom::new(c2, 3, 1).groups(groups), true)?;
        let boxes = b.plain_conv(&format!("{bx}.2"), y, ConvGeom::new(4 * REG_MAX, 1, 1).groups(groups), true)?;
        let cx = format!("{name}.{cls_cv}.{i}");
        let y = b.conv(&format!("{cx}.0"), x, ConvGeom::new(c3, 3, 1), true)?;
        let y = b.conv(&format!("{cx}.1"), y, ConvGeom::new(c3, 3, 1), true)?;
        let cls = b.plain_conv(&format!("{cx}.2"), y, ConvGeom::new(nc, 1, 1), true)?;
        maps.push(b.concat(&format!("{name}.level{i}.{box_cv}"), &[boxes, cls]));
    }
    let strides = inputs.iter().map(|&x| b.value_stride[x] as f64).collect();
    let dfl_weight = b.src.fixed(&format!("{name}.{dfl}.conv.weight"), dfl_arange())?;
    let detect = Detect { nc, reg_max: REG_MAX, strides, dfl_weight };
    let out = b.detect(&format!("{name}.{dfl}"), &maps, detect);
    Ok((out, maps))
}

fn dfl_arange() -> Tensor {
    Tensor::arange(REG_MAX, (Kind::Float, tch::Device::Cpu)).view([1, REG_MAX, 1, 1])
}
