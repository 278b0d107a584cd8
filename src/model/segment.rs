//! Upstream's segmentation heads (`models/yolo.py`, `models/common.py`): a detect head plus,
//! per level, a mask-coefficient branch (Conv 3x3, Conv 3x3, 1x1 conv to nm), and the nm mask
//! prototypes at 1/4 of the input. Eval output: the detections with the coefficients
//! appended (B, 4+nc+nm, A), and the prototypes (B, nm, H/4, W/4).
//!
//! * `DSegment`: a `DDetect` over all inputs but the last; `proto` is a 1x1 `Conv` on the last.
//! * `Segment`: a `Detect` over all inputs; `proto` is `Proto` on the first level (Conv 3x3
//!   to npr, nearest 2× upsample, Conv 3x3, Conv 1x1 to nm).
//! * `DualDSegment`: inputs (aux levels, main levels, aux proto input, main proto input); the
//!   aux branch is `cv2`/`cv3`/`cv6`/`proto`/`dfl`, the main `cv4`/`cv5`/`cv7`/`proto2`/`dfl2`;
//!   eval returns the main branch only.

use super::builder::{Builder, ConvGeom, Heads};
use super::detect::{detect_branch, BoxBranch};
use super::graph::ValueId;
use anyhow::{bail, Result};

/// The mask-coefficient branch `cv` over `levels`: (B, nm, H, W) per level.
fn coefficients(b: &mut Builder, name: &str, cv: &str, levels: &[ValueId], nm: i64) -> Result<Vec<ValueId>> {
    let c4 = (b.channels[levels[0]] / 4).max(nm);
    let mut coeffs = Vec::with_capacity(levels.len());
    for (i, &x) in levels.iter().enumerate() {
        let cx = format!("{name}.{cv}.{i}");
        let y = b.conv(&format!("{cx}.0"), x, ConvGeom::new(c4, 3, 1), true)?;
        let y = b.conv(&format!("{cx}.1"), y, ConvGeom::new(c4, 3, 1), true)?;
        coeffs.push(b.plain_conv(&format!("{cx}.2"), y, ConvGeom::new(nm, 1, 1), true)?);
    }
    Ok(coeffs)
}

fn check_nm(nm: i64) -> Result<()> {
    if nm < 1 {
        bail!("a segmentation head needs at least one mask coefficient, got {nm}");
    }
    Ok(())
}

fn strides(b: &Builder, levels: &[ValueId]) -> Vec<f64> {
    levels.iter().map(|&x| b.value_stride[x] as f64).collect()
}

/// `DSegment` over `inputs` (P3, P4, P5, prototype input).
pub fn dsegment(b: &mut Builder, name: &str, inputs: &[ValueId], nc: i64, nm: i64) -> Result<Heads> {
    let Some((&proto_in, levels)) = inputs.split_last().filter(|(_, l)| !l.is_empty()) else {
        bail!("DSegment needs the detection levels and a prototype input");
    };
    check_nm(nm)?;
    let proto = b.conv(&format!("{name}.proto"), proto_in, ConvGeom::new(nm, 1, 1), true)?;
    let coeffs = coefficients(b, name, "cv4", levels, nm)?;
    let (detections, maps) = detect_branch(b, name, levels, nc, BoxBranch::Grouped, "cv2", "cv3", "dfl")?;
    let output = b.append_coeffs(&format!("{name}.coeffs"), detections, &coeffs);
    Ok(Heads { output, output_aux: None, maps, strides: strides(b, levels), proto: Some(proto), nm: nm as usize })
}

/// `Segment` over `levels` (P3, P4, P5) with `npr` prototype channels (already width-scaled).
pub fn segment(b: &mut Builder, name: &str, levels: &[ValueId], nc: i64, nm: i64, npr: i64) -> Result<Heads> {
    if levels.is_empty() {
        bail!("Segment needs the detection levels");
    }
    check_nm(nm)?;
    let proto = proto_module(b, &format!("{name}.proto"), levels[0], npr, nm)?;
    let coeffs = coefficients(b, name, "cv4", levels, nm)?;
    let (detections, maps) = detect_branch(b, name, levels, nc, BoxBranch::Plain, "cv2", "cv3", "dfl")?;
    let output = b.append_coeffs(&format!("{name}.coeffs"), detections, &coeffs);
    Ok(Heads { output, output_aux: None, maps, strides: strides(b, levels), proto: Some(proto), nm: nm as usize })
}

/// Upstream `Proto(c1, c_=npr, c2=nm)`: cv1 Conv 3x3, nearest 2× upsample, cv2 Conv 3x3, cv3 Conv 1x1.
fn proto_module(b: &mut Builder, name: &str, x: ValueId, npr: i64, nm: i64) -> Result<ValueId> {
    let y = b.conv(&format!("{name}.cv1"), x, ConvGeom::new(npr, 3, 1), true)?;
    let y = b.upsample(&format!("{name}.upsample"), y, 2);
    let y = b.conv(&format!("{name}.cv2"), y, ConvGeom::new(npr, 3, 1), true)?;
    b.conv(&format!("{name}.cv3"), y, ConvGeom::new(nm, 1, 1), true)
}

/// `DualDSegment` over (aux P3–P5, main P3–P5, aux prototype input, main prototype input).
pub fn dual_dsegment(b: &mut Builder, name: &str, inputs: &[ValueId], nc: i64, nm: i64) -> Result<Heads> {
    if inputs.len() < 4 || !inputs.len().is_multiple_of(2) {
        bail!("DualDSegment needs aux and main detection levels and two prototype inputs, got {} inputs", inputs.len());
    }
    check_nm(nm)?;
    let nl = (inputs.len() - 2) / 2;
    let (aux, main) = (&inputs[..nl], &inputs[nl..2 * nl]);
    let (aux_proto_in, main_proto_in) = (inputs[2 * nl], inputs[2 * nl + 1]);
    // The aux branch is built so that every checkpoint tensor has its place; eval does not read it.
    b.conv(&format!("{name}.proto"), aux_proto_in, ConvGeom::new(nm, 1, 1), true)?;
    let proto = b.conv(&format!("{name}.proto2"), main_proto_in, ConvGeom::new(nm, 1, 1), true)?;
    coefficients(b, name, "cv6", aux, nm)?;
    let coeffs = coefficients(b, name, "cv7", main, nm)?;
    let (aux_out, _) = detect_branch(b, name, aux, nc, BoxBranch::Grouped, "cv2", "cv3", "dfl")?;
    let (detections, maps) = detect_branch(b, name, main, nc, BoxBranch::Grouped, "cv4", "cv5", "dfl2")?;
    let output = b.append_coeffs(&format!("{name}.coeffs"), detections, &coeffs);
    Ok(Heads { output, output_aux: Some(aux_out), maps, strides: strides(b, main), proto: Some(proto), nm: nm as usize })
}
