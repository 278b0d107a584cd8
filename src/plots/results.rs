//! A QAT run's story, updated after every epoch: `results.csv` (one row per epoch) and
//! `results.png` (AP of Origin / PTQ / each QAT epoch, loss, lr), in the spirit of
//! upstream utils/plots.py `plot_results`.

use super::canvas::{err, render, Area};
use super::font::FAMILY;
use crate::util::write_atomic;
use anyhow::Result;
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::Path;

pub const RESULTS_SIZE: (u32, u32) = (1500, 900);

/// One finished QAT epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochRecord {
    pub epoch: usize,
    /// Named training losses of the epoch (mean), e.g. `("layer_mse", 0.012)`.
    pub losses: Vec<(String, f64)>,
    pub lr: f64,
    /// mAP50-95, mAP50, precision and recall of the epoch's evaluation.
    pub ap: f64,
    pub ap50: f64,
    pub precision: f64,
    pub recall: f64,
}

/// The AP of a model the epochs are compared with (Origin = floating point, PTQ).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Level {
    pub ap: f64,
    pub ap50: f64,
}

/// Writes `dir/results.csv` and `dir/results.png` for the epochs so far (call after each).
pub fn write(dir: &Path, epochs: &[EpochRecord], origin: Option<Level>, ptq: Option<Level>) -> Result<()> {
    write_atomic(&dir.join("results.csv"), csv(epochs).as_bytes())?;
    render(&dir.join("results.png"), RESULTS_SIZE, |a| draw(a, epochs, origin, ptq))
}

/// Header `epoch,<loss names>,lr,ap,ap50,precision,recall`, one row per epoch.
pub fn csv(epochs: &[EpochRecord]) -> String {
    let loss_names: Vec<&str> = epochs.first().map(|e| e.losses.iter().map(|(n, _)| n.as_str()).collect()).unwrap_or_default();
    let mut out = String::from("epoch");
    loss_names.iter().for_each(|n| out.push_str(&format!(",{n}")));
    out.push_str(",lr,ap,ap50,precision,recall\n");
    for e in epochs {
        let _ = write!(out, "{}", e.epoch);
        e.losses.iter().for_each(|(_, v)| out.push_str(&format!(",{v:.6}")));
        let _ = writeln!(out, ",{:.6e},{:.5},{:.5},{:.5},{:.5}", e.lr, e.ap, e.ap50, e.precision, e.recall);
    }
    out
}

fn draw(area: &Area, epochs: &[EpochRecord], origin: Option<Level>, ptq: Option<Level>) -> Result<()> {
    let panels = area.split_evenly((2, 2));
    let ap = |e: &EpochRecord| e.ap;
    let ap50 = |e: &EpochRecord| e.ap50;
    panel(&panels[0], "AP50-95", epochs, &ap, &[(origin.map(|l| l.ap), "Origin"), (ptq.map(|l| l.ap), "PTQ")], plain)?;
    panel(&panels[1], "AP50", epochs, &ap50, &[(origin.map(|l| l.ap50), "Origin"), (ptq.map(|l| l.ap50), "PTQ")], plain)?;
    let loss = |e: &EpochRecord| e.losses.first().map_or(f64::NAN, |l| l.1);
    let loss_name = epochs.first().and_then(|e| e.losses.first()).map_or("loss".to_string(), |l| format!("loss ({})", l.0));
    panel(&panels[2], &loss_name, epochs, &loss, &[], plain)?;
    panel(&panels[3], "lr", epochs, &|e: &EpochRecord| e.lr, &[], sci)
}

fn plain(v: &f64) -> String {
    format!("{v:.4}")
}

fn sci(v: &f64) -> String {
    format!("{v:.1e}")
}

/// Epoch ticks on whole numbers only.
fn whole(v: &f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        String::new()
    }
}

/// One metric per epoch (line with points) and horizontal reference levels.
fn panel(
    area: &Area,
    title: &str,
    epochs: &[EpochRecord],
    value: &dyn Fn(&EpochRecord) -> f64,
    levels: &[(Option<f64>, &str)],
    fmt_y: fn(&f64) -> String,
) -> Result<()> {
    let pts: Vec<(f64, f64)> = epochs.iter().map(|e| (e.epoch as f64, value(e))).filter(|p| p.1.is_finite()).collect();
    let refs: Vec<(f64, &str)> = levels.iter().filter_map(|(v, n)| v.map(|v| (v, *n))).collect();
    let ys = pts.iter().map(|p| p.1).chain(refs.iter().map(|r| r.0));
    let (lo, hi) = ys.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let (lo, hi) = if lo > hi { (0.0, 1.0) } else { (lo, hi) };
    // A flat series (a constant lr) gets a band around it rather than a sliver.
    let pad = if hi - lo < hi.abs() * 1e-3 { (hi.abs() * 0.5).max(1e-9) } else { (hi - lo) * 0.1 };
    let (x0, x1) = (epochs.first().map_or(0.0, |e| e.epoch as f64) - 0.5, epochs.last().map_or(1.0, |e| e.epoch as f64) + 0.5);
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FAMILY, 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(x0..x1, (lo - pad)..(hi + pad))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .x_label_formatter(&whole)
        .y_label_formatter(&fmt_y)
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .light_line_style(WHITE)
        .draw()
        .map_err(err)?;
    let blue = RGBColor(31, 119, 180);
    chart.draw_series(LineSeries::new(pts.iter().copied(), blue.stroke_width(2))).map_err(err)?;
    chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, blue.filled()))).map_err(err)?;
    for (i, &(v, name)) in refs.iter().enumerate() {
        let color = [RGBColor(40, 160, 40), RGBColor(220, 40, 40)][i % 2];
        let label = format!("{name} {v:.4}");
        chart
            .draw_series(std::iter::once(PathElement::new(vec![(x0, v), (x1, v)], color.stroke_width(2))))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
    }
    if !refs.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .label_font((FAMILY, 14))
            .draw()
            .map_err(err)?;
    }
    Ok(())
}
