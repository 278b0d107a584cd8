//! The command line: thin wrappers over the library, one file per command.

mod bench;
mod common;
mod device;
mod eval;
mod export;
mod forward;
mod info;
mod predict;
mod quantize;
mod quantize_args;
mod reparameterize;
mod sensitive;
pub mod validate;

use clap::{Parser, Subcommand};

pub use device::parse_device;

#[derive(Parser)]
#[command(name = "yolo-qat", version, about = "INT8 quantization (PTQ + QAT) of YOLOv9 models for TensorRT")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Images whose header claims more pixels are skipped with a warning, before decoding
    /// (upstream's PIL limit by default).
    #[arg(long, global = true, default_value_t = crate::data::image_io::DEFAULT_MAX_PIXELS)]
    max_pixels: u64,
}

#[derive(Subcommand)]
enum Command {
    /// Layers, parameters, GFLOPs, classes and strides of a model.
    Info(info::Args),
    /// Turn a dual-head YOLOv9 checkpoint into its GELAN ("converted") model.
    Reparameterize(reparameterize::Args),
    /// Run the fused model on a tensor from a safetensors file (debugging, parity checks).
    Forward(forward::Args),
    /// mAP exactly as upstream val.py computes it (any checkpoint, or an exported .onnx).
    Eval(eval::Args),
    /// PTQ calibration then QAT finetuning, evaluating and saving after each stage.
    Quantize(Box<quantize::Args>),
    /// Detections drawn on images (`--compare W2`: two models side by side).
    Predict(predict::Args),
    /// Per-layer sensitivity to INT8: PTQ AP with each layer alone kept in floating point.
    Sensitive(sensitive::Args),
    /// Speed and memory figures (docs/perf.md): `bench qat` or `bench infer`.
    Bench(bench::Args),
    /// Q/DQ ONNX for TensorRT (`--end2end` adds EfficientNMS_TRT); `--check FILE` checks an export.
    Export(export::Args),
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    // libtorch reports failures by panicking inside tch; say it on one line, no backtrace.
    std::panic::set_hook(Box::new(|info| {
        if crate::util::PANIC_IS_HANDLED.with(|h| h.get()) {
            return;
        }
        let msg = info.payload().downcast_ref::<String>().cloned().or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
        let first = msg.lines().find(|l| !l.trim().is_empty()).unwrap_or("unknown failure");
        eprintln!("error: {first}");
    }));
    let cli = Cli::parse();
    if cli.max_pixels == 0 {
        eprintln!("error: --max-pixels 0: must be at least 1");
        return 1;
    }
    crate::data::image_io::set_max_pixels(cli.max_pixels);
    // quantize stops between steps on Ctrl-C itself (and its drops clean up); the others
    // exit at once and remove their temporary files and run locks first.
    if !matches!(cli.command, Command::Quantize(_)) {
        crate::util::cleanup::remove_on_interrupt();
    }
    let result = match cli.command {
        Command::Info(a) => info::run(a),
        Command::Reparameterize(a) => reparameterize::run(a),
        Command::Forward(a) => forward::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Quantize(a) => quantize::run(*a),
        Command::Predict(a) => predict::run(a),
        Command::Sensitive(a) => sensitive::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Export(a) => export::run(a),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            1
        }
    }
}

/// The error and its causes on one line.
fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ").replace('\n', " ")
}
