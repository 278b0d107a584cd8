//! `sensitivity.png`: the AP of PTQ with each layer alone kept in floating point, layers
//! ranked by AP gain, with the all-INT8 (PTQ) and floating-point (Origin) APs as lines.

use super::canvas::{err, render, Area};
use super::font::FAMILY;
use crate::quant::sensitivity::Sensitivity;
use anyhow::Result;
use plotters::prelude::*;
use std::path::Path;

pub const SENSITIVITY_SIZE: (u32, u32) = (1400, 800);

pub fn write(path: &Path, s: &Sensitivity, origin_map: Option<f64>) -> Result<()> {
    render(path, SENSITIVITY_SIZE, |a| draw(a, s, origin_map))
}

fn draw(area: &Area, s: &Sensitivity, origin: Option<f64>) -> Result<()> {
    let ranked = s.ranked();
    let n = ranked.len().max(2);
    let values = ranked.iter().map(|l| l.map).chain([s.ptq_map]).chain(origin);
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let pad = ((hi - lo) * 0.15).max(0.002);
    let (y0, y1) = ((lo - pad).max(0.0), (hi + pad).min(1.0));
    let mut chart = ChartBuilder::on(area)
        .caption("Sensitivity: AP with one layer kept in floating point", (FAMILY, 28))
        .margin(20)
        .x_label_area_size(60)
        .y_label_area_size(80)
        // A segmented 0..k range has k + 1 slots: one per layer.
        .build_cartesian_2d((0..n - 1).into_segmented(), y0..y1)
        .map_err(err)?;
    let label = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) => ranked.get(*i).map(|l| l.layer.trim_start_matches("model.").to_string()).unwrap_or_default(),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .x_labels(n)
        .x_label_formatter(&label)
        .x_desc("layer (model.I), ranked by AP gain")
        .y_desc("AP50-95")
        .label_style((FAMILY, 16))
        .axis_desc_style((FAMILY, 20))
        .disable_x_mesh()
        .light_line_style(WHITE)
        .draw()
        .map_err(err)?;
    let bar = RGBColor(70, 130, 180).filled();
    chart
        .draw_series(ranked.iter().enumerate().map(|(i, l)| {
            let mut r = Rectangle::new([(SegmentValue::Exact(i), y0), (SegmentValue::Exact(i + 1), l.map)], bar);
            r.set_margin(0, 0, 4, 4);
            r
        }))
        .map_err(err)?;
    let mut level = |v: f64, color: RGBColor, name: String| -> Result<()> {
        let line = vec![(SegmentValue::Exact(0), v), (SegmentValue::Exact(n), v)];
        chart
            .draw_series(std::iter::once(PathElement::new(line, color.stroke_width(3))))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(3)));
        Ok(())
    };
    level(s.ptq_map, RGBColor(220, 40, 40), format!("PTQ (all INT8) {:.4}", s.ptq_map))?;
    if let Some(o) = origin {
        level(o, RGBColor(40, 160, 40), format!("Origin (floating point) {o:.4}"))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FAMILY, 18))
        .draw()
        .map_err(err)?;
    Ok(())
}
