//! Colours: upstream's class palette (utils/plots.py `Colors`) and matplotlib's
//! "Blues" for the confusion matrix.

use plotters::style::RGBColor;

/// Upstream `Colors.hexs`, cycled by class index.
const PALETTE: [u32; 20] = [
    0xFF3838, 0xFF9D97, 0xFF701F, 0xFFB21D, 0xCFD231, 0x48F90A, 0x92CC17, 0x3DDB86, 0x1A9334, 0x00D4BB, 0x2C99A8, 0x00C2FF, 0x344593, 0x6473FF, 0x0018EC,
    0x8438FF, 0x520085, 0xCB38FF, 0xFF95C8, 0xFF37C7,
];

pub fn class_color(class: usize) -> RGBColor {
    let h = PALETTE[class % PALETTE.len()];
    RGBColor((h >> 16) as u8, (h >> 8) as u8, h as u8)
}

/// matplotlib's "Blues" at t in [0, 1] (its five anchor colours, linearly blended).
pub fn blues(t: f64) -> RGBColor {
    const STOPS: [(f64, f64, f64); 5] = [(247.0, 251.0, 255.0), (198.0, 219.0, 239.0), (107.0, 174.0, 214.0), (33.0, 113.0, 181.0), (8.0, 48.0, 107.0)];
    let x = t.clamp(0.0, 1.0) * 4.0;
    let i = (x.floor() as usize).min(3);
    let f = x - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |u: f64, v: f64| (u + (v - u) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Line colours of the per-class curves (matplotlib's tab10 cycle).
pub fn tab10(i: usize) -> RGBColor {
    const TAB10: [u32; 10] = [0x1F77B4, 0xFF7F0E, 0x2CA02C, 0xD62728, 0x9467BD, 0x8C564B, 0xE377C2, 0x7F7F7F, 0xBCBD22, 0x17BECF];
    let h = TAB10[i % 10];
    RGBColor((h >> 16) as u8, (h >> 8) as u8, h as u8)
}
