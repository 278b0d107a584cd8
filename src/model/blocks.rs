//! Upstream YOLOv9 blocks (`models/common.py`), each emitted as graph nodes.
//! Names follow upstream's module paths so that parameters load by name.

use super::builder::{Builder, ConvGeom};
use super::graph::ValueId;
use anyhow::{bail, Result};

/// `AConv(c1, c2)`: avg-pool 2x2/1, then a 3x3/2 conv.
pub fn aconv(b: &mut Builder, name: &str, x: ValueId, c2: i64) -> Result<ValueId> {
    let x = b.avg_pool(&format!("{name}.avg_pool"), x, 2, 1, 0);
    b.conv(&format!("{name}.cv1"), x, ConvGeom::new(c2, 3, 2).pad(1), true)
}

/// `ADown(c1, c2)`: avg-pool, split in halves; 3x3/2 conv on one, max-pool + 1x1 on the other.
pub fn adown(b: &mut Builder, name: &str, x: ValueId, c2: i64) -> Result<ValueId> {
    let x = b.avg_pool(&format!("{name}.avg_pool"), x, 2, 1, 0);
    let (x1, x2) = b.chunk2(&format!("{name}.chunk"), x);
    let c = c2 / 2;
    let x1 = b.conv(&format!("{name}.cv1"), x1, ConvGeom::new(c, 3, 2).pad(1), true)?;
    let x2 = b.max_pool(&format!("{name}.max_pool"), x2, 3, 2, 1);
    let x2 = b.conv(&format!("{name}.cv2"), x2, ConvGeom::new(c, 1, 1).pad(0), true)?;
    Ok(b.concat(&format!("{name}.cat"), &[x1, x2]))
}

/// `RepNBottleneck(c1, c2, shortcut, e=1.0)`: RepConvN 3x3, Conv 3x3, residual add when c1 == c2.
fn rep_n_bottleneck(b: &mut Builder, name: &str, x: ValueId, c2: i64) -> Result<ValueId> {
    let c1 = b.channels[x];
    let y = b.rep_conv(&format!("{name}.cv1"), x, c2)?;
    let y = b.conv(&format!("{name}.cv2"), y, ConvGeom::new(c2, 3, 1), true)?;
    Ok(if c1 == c2 { b.add(&format!("{name}.add"), &[x, y]) } else { y })
}

/// `RepNCSP(c1, c2, n)`: CSP with `n` RepNBottlenecks on one half.
fn rep_ncsp(b: &mut Builder, name: &str, x: ValueId, c2: i64, n: i64) -> Result<ValueId> {
    let c_ = c2 / 2;
    let mut m = b.conv(&format!("{name}.cv1"), x, ConvGeom::new(c_, 1, 1), true)?;
    for j in 0..n {
        m = rep_n_bottleneck(b, &format!("{name}.m.{j}"), m, c_)?;
    }
    let y2 = b.conv(&format!("{name}.cv2"), x, ConvGeom::new(c_, 1, 1), true)?;
    let cat = b.concat(&format!("{name}.cat"), &[m, y2]);
    b.conv(&format!("{name}.cv3"), cat, ConvGeom::new(c2, 1, 1), true)
}

/// `RepNCSPELAN4(c1, c2, c3, c4, c5)`.
pub fn rep_ncspelan4(b: &mut Builder, name: &str, x: ValueId, c2: i64, c3: i64, c4: i64, c5: i64) -> Result<ValueId> {
    let y = b.conv(&format!("{name}.cv1"), x, ConvGeom::new(c3, 1, 1), true)?;
    let (y0, y1) = b.chunk2(&format!("{name}.chunk"), y);
    let y2 = rep_ncsp(b, &format!("{name}.cv2.0"), y1, c4, c5)?;
    let y2 = b.conv(&format!("{name}.cv2.1"), y2, ConvGeom::new(c4, 3, 1), true)?;
    let y3 = rep_ncsp(b, &format!("{name}.cv3.0"), y2, c4, c5)?;
    let y3 = b.conv(&format!("{name}.cv3.1"), y3, ConvGeom::new(c4, 3, 1), true)?;
    let cat = b.concat(&format!("{name}.cat"), &[y0, y1, y2, y3]);
    b.conv(&format!("{name}.cv4"), cat, ConvGeom::new(c2, 1, 1), true)
}

/// `ELAN1(c1, c2, c3, c4)`.
pub fn elan1(b: &mut Builder, name: &str, x: ValueId, c2: i64, c3: i64, c4: i64) -> Result<ValueId> {
    let y = b.conv(&format!("{name}.cv1"), x, ConvGeom::new(c3, 1, 1), true)?;
    let (y0, y1) = b.chunk2(&format!("{name}.chunk"), y);
    let y2 = b.conv(&format!("{name}.cv2"), y1, ConvGeom::new(c4, 3, 1), true)?;
    let y3 = b.conv(&format!("{name}.cv3"), y2, ConvGeom::new(c4, 3, 1), true)?;
    let cat = b.concat(&format!("{name}.cat"), &[y0, y1, y2, y3]);
    b.conv(&format!("{name}.cv4"), cat, ConvGeom::new(c2, 1, 1), true)
}

/// `SPPELAN(c1, c2, c3)`: 1x1 conv, three chained 5x5 max-pools, concat, 1x1 conv.
pub fn sppelan(b: &mut Builder, name: &str, x: ValueId, c2: i64, c3: i64) -> Result<ValueId> {
    let mut ys = vec![b.conv(&format!("{name}.cv1"), x, ConvGeom::new(c3, 1, 1), true)?];
    for cv in ["cv2", "cv3", "cv4"] {
        let last = *ys.last().expect("non-empty");
        ys.push(b.max_pool(&format!("{name}.{cv}.m"), last, 5, 1, 2));
    }
    let cat = b.concat(&format!("{name}.cat"), &ys);
    b.conv(&format!("{name}.cv5"), cat, ConvGeom::new(c2, 1, 1), true)
}

/// `CBLinear(c1, c2s, k, s)`: one conv with bias, split into `c2s` parts.
pub fn cblinear(b: &mut Builder, name: &str, x: ValueId, c2s: &[i64], k: i64, s: i64) -> Result<Vec<ValueId>> {
    if let Some(c) = c2s.iter().find(|&&c| c < 1) {
        bail!("output channels {c}: must be at least 1");
    }
    let total = c2s.iter().sum();
    let y = b.plain_conv(&format!("{name}.conv"), x, ConvGeom::new(total, k, s), true)?;
    Ok(b.split(&format!("{name}.split"), y, c2s))
}

/// `CBFuse(idx)`: resize each picked part to the last input's size and sum.
pub fn cbfuse(b: &mut Builder, name: &str, parts: &[ValueId], last: ValueId) -> ValueId {
    let mut xs: Vec<ValueId> = parts.iter().enumerate().map(|(j, &p)| b.resize_like(&format!("{name}.resize{j}"), p, last)).collect();
    xs.push(last);
    b.add(&format!("{name}.sum"), &xs)
}
