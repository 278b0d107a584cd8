//! `confusion_matrix.png`: upstream utils/metrics.py `ConfusionMatrix.plot` (normalized
//! by true class, cells under 0.005 left blank, values printed below 30 classes).

use super::canvas::{err, render, Area};
use super::colors::blues;
use super::font::FAMILY;
use crate::eval::confusion::ConfusionMatrix;
use anyhow::Result;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// Size of the picture (matplotlib's 12 x 9 inches at 100 dpi).
pub const CONFUSION_SIZE: (u32, u32) = (1200, 900);

/// Values are printed in the cells below this many classes (upstream: 30).
const ANNOTATE_CLASSES: usize = 30;

pub fn write(path: &Path, cm: &ConfusionMatrix, names: &[String]) -> Result<()> {
    render(path, CONFUSION_SIZE, |a| draw(a, cm, names))
}

fn draw(area: &Area, cm: &ConfusionMatrix, names: &[String]) -> Result<()> {
    let n = cm.nc + 1;
    let (w, h) = (CONFUSION_SIZE.0 as i32, CONFUSION_SIZE.1 as i32);
    let (top, bottom) = (70, 110);
    let cell = ((w - 210) / n as i32).min((h - top - bottom) / n as i32).max(1);
    let left = ((w - n as i32 * cell) / 2).max(170); // centred, room for the row names

    let norm = cm.normalized();
    let labels: Vec<String> = names.iter().cloned().chain(std::iter::once("background".to_string())).collect();
    let font = (FAMILY, (cell / 4).clamp(8, 20)).into_font();
    area.draw(&Text::new("Confusion Matrix", (w / 2, 20), (FAMILY, 30).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Top)))).map_err(err)?;
    for (r, row) in norm.iter().enumerate() {
        for (c, &v) in row.iter().enumerate() {
            let (x0, y0) = (left + c as i32 * cell, top + r as i32 * cell);
            let shown = v >= 0.005; // upstream sets smaller values to NaN (blank)
            let fill = if shown { blues(v) } else { WHITE };
            area.draw(&Rectangle::new([(x0, y0), (x0 + cell, y0 + cell)], fill.filled())).map_err(err)?;
            if shown && n <= ANNOTATE_CLASSES {
                let ink = if v > 0.5 { WHITE } else { BLACK };
                let style = font.color(&ink).pos(Pos::new(HPos::Center, VPos::Center));
                area.draw(&Text::new(format!("{v:.2}"), (x0 + cell / 2, y0 + cell / 2), style)).map_err(err)?;
            }
        }
    }
    if n <= ANNOTATE_CLASSES {
        axis_labels(area, &labels, (left, top, cell), &font)?;
    }
    let end = top + n as i32 * cell;
    area.draw(&Text::new("True", (left + n as i32 * cell / 2, end + 60), (FAMILY, 24).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Top))))
        .map_err(err)?;
    area.draw(&Text::new("Predicted", (10, top + n as i32 * cell / 2), (FAMILY, 24).into_font().color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center))))
        .map_err(err)?;
    Ok(())
}

/// Class names under the columns (true) and left of the rows (predicted).
fn axis_labels(area: &Area, labels: &[String], (left, top, cell): (i32, i32, i32), font: &FontDesc) -> Result<()> {
    let n = labels.len() as i32;
    for (i, name) in labels.iter().enumerate() {
        let mid = i as i32 * cell + cell / 2;
        let under = font.color(&BLACK).pos(Pos::new(HPos::Center, VPos::Top));
        area.draw(&Text::new(name.as_str(), (left + mid, top + n * cell + 8), under)).map_err(err)?;
        let beside = font.color(&BLACK).pos(Pos::new(HPos::Right, VPos::Center));
        area.draw(&Text::new(name.as_str(), (left - 8, top + mid), beside)).map_err(err)?;
    }
    Ok(())
}
