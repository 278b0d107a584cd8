//! Upstream `DSegment` (`models/yolo.py`): a `DDetect` over all inputs but the last,
//! per level a mask-coefficient branch `cv4` (Conv 3x3, Conv 3x3, 1x1 conv to nm),
//! and a 1x1 `Conv` `proto` on the last input giving the nm mask prototypes.
//! Eval output: the detections with the coefficients appended, and the prototypes.

use super::builder::{Builder, ConvGeom, Heads};
use super::detect::detect_branch;
use super::graph::ValueId;
use anyhow::{bail, Result};

/// Builds the head over `inputs` (P3, P4, P5, prototype input).
pub fn dsegment(b: &mut Builder, name: &str, inputs: &[ValueId], nc: i64, nm: i64) -> Result<Heads> {
    let Some((&proto_in, levels)) = inputs.split_last().filter(|(_, l)| !l.is_empty()) else {
        bail!("DSegment needs the detection levels and a prototype input");
    };
    if nm < 1 {
        bail!("DSegment needs at least one mask coefficient, got {nm}");
    }
    let proto = b.conv(&format!("{name}.proto"), proto_in, ConvGeom::new(nm, 1, 1), true)?;
    let c4 = (b.channels[levels[0]] / 4).max(nm);
    let mut coeffs = Vec::with_capacity(levels.len());
    for (i, &x) in levels.iter().enumerate() {
        let cx = format!("{name}.cv4.{i}");
        let y = b.conv(&format!("{cx}.0"), x, ConvGeom::new(c4, 3, 1), true)?;
        let y = b.conv(&format!("{cx}.1"), y, ConvGeom::new(c4, 3, 1), true)?;
        coeffs.push(b.plain_conv(&format!("{cx}.2"), y, ConvGeom::new(nm, 1, 1), true)?);
    }
    let (detections, maps) = detect_branch(b, name, levels, nc, "cv2", "cv3", "dfl")?;
    let output = b.append_coeffs(&format!("{name}.coeffs"), detections, &coeffs);
    let strides = levels.iter().map(|&x| b.value_stride[x] as f64).collect();
    Ok(Heads { output, output_aux: None, maps, strides, proto: Some(proto), nm: nm as usize })
}
