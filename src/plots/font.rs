//! The one font every picture uses: DejaVu Sans (Bitstream Vera license, in
//! assets/fonts), compiled into the binary so nothing is needed at run time.

use anyhow::{bail, Result};
use plotters::style::{register_font, FontStyle};
use std::sync::OnceLock;

/// The family name pictures ask plotters for.
pub const FAMILY: &str = "sans-serif";

static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
static REGISTERED: OnceLock<bool> = OnceLock::new();

/// Registers the font with plotters (once per process).
pub fn ensure() -> Result<()> {
    if !*REGISTERED.get_or_init(|| register_font(FAMILY, FontStyle::Normal, FONT).is_ok()) {
        bail!("the embedded font (assets/fonts/DejaVuSans.ttf) does not parse");
    }
    Ok(())
}
