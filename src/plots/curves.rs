//! `PR_curve.png`, `F1_curve.png`, `P_curve.png`, `R_curve.png`: upstream utils/metrics.py
//! `plot_pr_curve` and `plot_mc_curve`, from the curves `ap_per_class` computed the AP with.

use super::canvas::{err, render, Area};
use super::colors::tab10;
use super::font::FAMILY;
use crate::eval::metrics::{smooth, Curves};
use anyhow::Result;
use plotters::prelude::*;
use std::path::Path;

/// Size of every curve picture (matplotlib's 9 x 6 inches at 150 dpi).
pub const CURVE_SIZE: (u32, u32) = (1350, 900);

/// Per-class lines get a legend entry below this many classes (upstream: 21), grey otherwise.
const LEGEND_CLASSES: usize = 21;

/// One line of a chart.
pub struct Line {
    pub label: Option<String>,
    pub color: RGBColor,
    pub width: u32,
    pub points: Vec<(f64, f64)>,
}

/// Writes the four curve pictures into `dir`.
pub fn write_all(dir: &Path, c: &Curves) -> Result<()> {
    render(&dir.join("PR_curve.png"), CURVE_SIZE, |a| draw_chart(a, "Precision-Recall Curve", ("Recall", "Precision"), &pr_lines(c)))?;
    for (file, name, rows) in [("F1_curve.png", "F1", &c.f1), ("P_curve.png", "Precision", &c.p), ("R_curve.png", "Recall", &c.r)] {
        render(&dir.join(file), CURVE_SIZE, |a| draw_chart(a, &format!("{name}-Confidence Curve"), ("Confidence", name), &mc_lines(c, rows)))?;
    }
    Ok(())
}

/// Precision envelope per class (legend: name and AP50), their mean over 1000 recalls
/// (upstream's `py.mean(1)`) in thick blue.
pub fn pr_lines(c: &Curves) -> Vec<Line> {
    let legend = c.pr.len() < LEGEND_CLASSES;
    let mut lines: Vec<Line> =
        c.pr.iter()
            .enumerate()
            .map(|(i, pts)| Line {
                label: legend.then(|| format!("{} {:.3}", c.names[i], c.ap50[i])),
                color: class_line_color(legend, i),
                width: 1,
                points: pts.clone(),
            })
            .collect();
    let sampled: Vec<Vec<f64>> = c.pr.iter().map(|pts| c.px.iter().map(|&v| sample(pts, v)).collect()).collect();
    let map50 = c.ap50.iter().sum::<f64>() / c.ap50.len().max(1) as f64;
    lines.push(Line { label: Some(format!("all classes {map50:.3} mAP@0.5")), color: BLUE, width: 3, points: zip(&c.px, &column_mean(&sampled)) });
    lines
}

/// A metric against confidence per class, the smoothed mean in thick blue with its peak.
pub fn mc_lines(c: &Curves, rows: &[Vec<f64>]) -> Vec<Line> {
    let mut lines = class_lines(c, rows, |i| c.names[i].clone());
    let y = smooth(&column_mean(rows), 0.05);
    let best = (0..y.len()).fold(0, |b, i| if y[i] > y[b] { i } else { b });
    let label = format!("all classes {:.2} at {:.3}", y[best], c.px[best]);
    lines.push(Line { label: Some(label), color: BLUE, width: 3, points: zip(&c.px, &y) });
    lines
}

fn class_lines(c: &Curves, rows: &[Vec<f64>], label: impl Fn(usize) -> String) -> Vec<Line> {
    let legend = rows.len() < LEGEND_CLASSES;
    rows.iter()
        .enumerate()
        .map(|(i, y)| Line { label: legend.then(|| label(i)), color: class_line_color(legend, i), width: 1, points: zip(&c.px, y) })
        .collect()
}

fn class_line_color(legend: bool, i: usize) -> RGBColor {
    if legend {
        tab10(i)
    } else {
        RGBColor(128, 128, 128)
    }
}

fn column_mean(rows: &[Vec<f64>]) -> Vec<f64> {
    let n = rows.first().map_or(0, |r| r.len());
    (0..n).map(|k| rows.iter().map(|r| r[k]).sum::<f64>() / rows.len() as f64).collect()
}

fn zip(x: &[f64], y: &[f64]) -> Vec<(f64, f64)> {
    x.iter().copied().zip(y.iter().copied()).collect()
}

/// Axes 0..1 x 0..1 on the left, the legend outside on the right (upstream's bbox 1.04, 1).
pub fn draw_chart(area: &Area, title: &str, (xlabel, ylabel): (&str, &str), lines: &[Line]) -> Result<()> {
    area.fill(&WHITE).map_err(err)?;
    let (w, _) = area.dim_in_pixel();
    let (plot, legend) = area.split_horizontally(w * 70 / 100);
    let mut chart = ChartBuilder::on(&plot)
        .caption(title, (FAMILY, 30))
        .margin(20)
        .x_label_area_size(60)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)
        .map_err(err)?;
    chart.configure_mesh().x_desc(xlabel).y_desc(ylabel).label_style((FAMILY, 18)).axis_desc_style((FAMILY, 22)).light_line_style(WHITE).draw().map_err(err)?;
    let (pw, ph) = chart.plotting_area().dim_in_pixel();
    let px = (1.0 / pw.max(1) as f64, 1.0 / ph.max(1) as f64);
    for l in lines {
        for (dx, dy) in pen_offsets(l.width, px) {
            let pts = l.points.iter().map(|&(x, y)| (x + dx, y + dy));
            chart.draw_series(LineSeries::new(pts, l.color.stroke_width(1))).map_err(err)?;
        }
    }
    draw_legend(&legend, lines)
}

/// A thick line as one-pixel lines shifted by up to width / 2 pixels across and down:
/// plotters' wide strokes over 1000 short segments come out jagged.
fn pen_offsets(width: u32, (px, py): (f64, f64)) -> Vec<(f64, f64)> {
    let r = (width / 2) as i32;
    let mut v = vec![(0.0, 0.0)];
    for k in (1..=r).flat_map(|k| [k, -k]) {
        v.push((k as f64 * px, 0.0));
        v.push((0.0, k as f64 * py));
    }
    v
}

/// Legend rows: a short line in the series' colour, then its label.
pub fn draw_legend(area: &Area, lines: &[Line]) -> Result<()> {
    let mut y = 60;
    for l in lines {
        let Some(label) = &l.label else { continue };
        area.draw(&PathElement::new(vec![(10, y), (50, y)], l.color.stroke_width(l.width.max(2)))).map_err(err)?;
        area.draw(&Text::new(label.as_str(), (60, y - 10), (FAMILY, 18))).map_err(err)?;
        y += 28;
    }
    Ok(())
}

/// Area under a plotted PR line by COCO's 101-point rule: the line sampled at recall
/// 0, 0.01, … 1 (linear between plotted points), then the trapezoid rule, as `compute_ap`
/// integrates the envelope. Lets tests compare what is drawn with the reported AP50.
pub fn area_101(points: &[(f64, f64)]) -> f64 {
    let x = crate::eval::metrics::unit_linspace(101);
    let y: Vec<f64> = x.iter().map(|&v| sample(points, v)).collect();
    crate::eval::metrics::trapz(&y, &x)
}

/// The plotted polyline at `v` (last point with x <= v, linear to the next), as np.interp.
pub fn sample(points: &[(f64, f64)], v: f64) -> f64 {
    let j = points.partition_point(|p| p.0 <= v).saturating_sub(1);
    match points.get(j + 1) {
        Some(&(x1, y1)) if points[j].0 < v => points[j].1 + (y1 - points[j].1) * (v - points[j].0) / (x1 - points[j].0),
        _ => points[j].1,
    }
}
