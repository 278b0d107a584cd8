//! `yolo-qat info`: what a model is.

use crate::detector::info::summary;
use crate::detector::load;
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Model weights: upstream .pt or yolo-qat .safetensors.
    #[arg(long)]
    weights: PathBuf,
    /// Image size for the GFLOPs figure.
    #[arg(long, visible_aliases = ["img", "img-size"], default_value_t = 640)]
    imgsz: i64,
}

pub fn run(a: Args) -> Result<()> {
    let model = load(&a.weights)?;
    super::validate::imgsz("--imgsz", usize::try_from(a.imgsz).unwrap_or(0), super::validate::max_stride(&model))?;
    println!("{}", summary(&model, a.imgsz));
    Ok(())
}
