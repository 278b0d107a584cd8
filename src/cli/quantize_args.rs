//! `yolo-qat quantize` flags, and the QAT settings they resolve to (a recipe's
//! values, overridden flag by flag, each checked once with a one-line error).

use super::validate::{count, positive, workers};
use crate::quant::objective::{LossKind, LrShape, Objective};
use crate::quant::recipe::{QatSettings, Recipe};
use anyhow::{bail, Result};
use std::path::PathBuf;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecipeArg {
    /// Task loss, learned ranges, cosine LR, weight average (docs/results.md).
    Default,
    /// The reference `qat.py`: layer distillation, LR 1e-6 (1e-5 in epoch 6), fixed ranges.
    Seed,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossArg {
    /// Layer-wise MSE to the FP teacher (no labels).
    Distill,
    /// The YOLOv9 training loss on the labels.
    Task,
    /// Both, weighted by --task-weight and --distill-weight.
    #[value(name = "task+distill")]
    TaskDistill,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LrShapeArg {
    /// --lr, ×10 in epoch 6.
    Seed,
    Constant,
    /// Linear warm-up (--warmup-iters), then cosine down to --lr × --lrf.
    Cosine,
}

#[derive(clap::Args, Clone)]
pub struct Args {
    /// FP model: an upstream (converted) .pt or a yolo-qat .safetensors.
    #[arg(long)]
    pub weights: PathBuf,
    #[arg(long, default_value = "data/coco.yaml")]
    pub data: PathBuf,
    #[arg(long, default_value = super::common::DEFAULT_HYP)]
    pub hyp: PathBuf,
    #[arg(long, default_value = "cuda:0")]
    pub device: String,
    #[arg(long, default_value_t = 10)]
    pub batch_size: usize,
    #[arg(long, visible_aliases = ["img", "img-size"], default_value_t = 640)]
    pub imgsz: usize,
    #[arg(long, default_value = "runs/qat")]
    pub project: PathBuf,
    #[arg(long, default_value = "exp")]
    pub name: String,
    #[arg(long)]
    pub exist_ok: bool,
    /// QAT settings to start from; the flags below override them one by one.
    #[arg(long, value_enum, default_value_t = RecipeArg::Default)]
    pub recipe: RecipeArg,
    /// QAT iterations per epoch [200].
    #[arg(long)]
    pub iters: Option<usize>,
    /// QAT epochs [default: 5; seed: 10].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// What QAT minimizes [default: task; seed: distill].
    #[arg(long, value_enum)]
    pub loss: Option<LossArg>,
    /// Weight of the task loss under --loss task+distill [1].
    #[arg(long)]
    pub task_weight: Option<f64>,
    /// Weight of the layer MSE under --loss task+distill [1].
    #[arg(long)]
    pub distill_weight: Option<f64>,
    /// Base learning rate of Adam [default: 1e-4; seed: 1e-6].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Shape of the learning rate over the run [default: cosine; seed: seed].
    #[arg(long, value_enum)]
    pub lr_schedule: Option<LrShapeArg>,
    /// Final learning rate of the cosine, as a fraction of --lr [0.1].
    #[arg(long)]
    pub lrf: Option<f64>,
    /// Linear warm-up iterations of the cosine [100].
    #[arg(long)]
    pub warmup_iters: Option<usize>,
    /// Multiplies the learning rate schedule.
    #[arg(long, default_value_t = 1.0)]
    pub lr_scale: f64,
    /// Evaluate and save a moving average of the weights (upstream's ModelEMA) [default: on].
    #[arg(long, conflicts_with = "no_ema")]
    pub ema: bool,
    #[arg(long)]
    pub no_ema: bool,
    /// The average's decay [0.999].
    #[arg(long)]
    pub ema_decay: Option<f64>,
    /// The average's warm-up: decay × (1 − exp(−updates / tau)) [200].
    #[arg(long)]
    pub ema_tau: Option<f64>,
    /// Learn each activation quantizer's amax by Adam at this LR on log amax (LSQ-style);
    /// 0 keeps the calibrated ranges [default: 1e-3; seed: 0].
    #[arg(long, value_name = "LR")]
    pub learn_amax: Option<f64>,
    /// After QAT, keep the most sensitive layers in floating point (one more per round,
    /// each round finetuned for --recover-epochs) until AP ≥ Origin − this.
    #[arg(long, value_name = "AP")]
    pub max_ap_drop: Option<f64>,
    /// QAT epochs after each layer --max-ap-drop moves to floating point.
    #[arg(long, default_value_t = 2)]
    pub recover_epochs: usize,
    #[arg(long, default_value_t = 57)]
    pub seed: u64,
    /// Keep the detect layer in floating point (faster convergence, slower engine).
    #[arg(long)]
    pub no_last_layer: bool,
    /// Layers kept in floating point, e.g. `model.3,model.21` (see `yolo-qat sensitive`).
    #[arg(long, value_delimiter = ',')]
    pub skip_layers: Vec<String>,
    /// Distillation supervises every N-th top-level layer (and the last before the head).
    #[arg(long, default_value_t = 1)]
    pub supervision_stride: usize,
    /// Distillation also supervises the detect head's raw outputs.
    #[arg(long)]
    pub supervise_head: bool,
    /// Launch the QAT step's kernels one by one instead of replaying a CUDA graph.
    #[arg(long)]
    pub no_cuda_graph: bool,
    /// Run ATen's ops (NCHW) instead of our fused CUDA kernels (for comparisons; the
    /// results agree to rounding).
    #[arg(long)]
    pub no_fused_kernels: bool,
    /// Keep the QAT step in NCHW layout (on CUDA with our kernels it runs channels-last,
    /// which spares cuDNN a layout transpose around every convolution).
    #[arg(long)]
    pub no_channels_last: bool,
    #[arg(long)]
    pub no_eval_origin: bool,
    #[arg(long)]
    pub no_eval_ptq: bool,
    /// Also write COCO JSON (annotations, predictions) at each evaluation.
    #[arg(long)]
    pub eval_pycocotools: bool,
    /// Calibration batches of the training loader.
    #[arg(long, default_value_t = 26)]
    pub calib_batches: usize,
    /// Activation amax from histograms: mse, percentile, entropy or max.
    #[arg(long, default_value = "mse")]
    pub calib_method: String,
    /// Which junctions share one quantizer: `all` (every Concat and MaxPool, what TensorRT
    /// needs) or `reference` (only what the reference's ONNX walk finds).
    #[arg(long, default_value = "all")]
    pub ties: String,
    /// Calibrate the DFL conv's input like any other (the reference's way) instead of giving
    /// it amax 1, the known range of the softmax probabilities it reads.
    #[arg(long)]
    pub calibrate_dfl: bool,
    /// Continue the run in --project/--name from its last finished epoch (same flags).
    #[arg(long)]
    pub resume: bool,
    /// Do not write `results.csv` / `results.png` after each epoch.
    #[arg(long)]
    pub noplots: bool,
    /// Loader threads (default: all cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Keep every decoded, resized training image in memory (upstream's `--cache ram`):
    /// epochs after the first skip JPEG decoding and the resize, half the loader's work.
    /// About imgsz² × 3 bytes per image.
    #[arg(long)]
    pub cache: bool,
}

impl Args {
    pub fn recipe(&self) -> Recipe {
        match self.recipe {
            RecipeArg::Default => Recipe::Default,
            RecipeArg::Seed => Recipe::Seed,
        }
    }

    /// The recipe's settings with every given flag applied, each value checked.
    pub fn settings(&self) -> Result<QatSettings> {
        let mut s = QatSettings::of(self.recipe());
        if let Some(e) = self.epochs {
            s.epochs = count("--epochs", e)?;
        }
        if let Some(i) = self.iters {
            s.iters = count("--iters", i)?;
        }
        count("--calib-batches", self.calib_batches)?;
        count("--batch-size", self.batch_size)?;
        count("--supervision-stride", self.supervision_stride)?;
        if let Some(w) = self.workers {
            workers(w)?;
        }
        s.objective = self.objective(s.objective)?;
        self.apply_schedule(&mut s)?;
        s.learn_amax = match self.learn_amax {
            Some(0.0) => None,
            Some(lr) => Some(positive("--learn-amax", lr)?),
            None => s.learn_amax,
        };
        self.apply_ema(&mut s)?;
        if let Some(d) = self.max_ap_drop {
            if !(d.is_finite() && d >= 0.0) {
                bail!("--max-ap-drop {d}: expected an AP difference ≥ 0, e.g. 0.002");
            }
            count("--recover-epochs", self.recover_epochs)?;
            if self.no_eval_origin {
                bail!("--max-ap-drop needs the FP model's AP: drop --no-eval-origin");
            }
        }
        Ok(s)
    }

    fn objective(&self, base: Objective) -> Result<Objective> {
        let mut o = match self.loss {
            Some(LossArg::Distill) => Objective::distill(),
            Some(LossArg::Task) => Objective::task(),
            Some(LossArg::TaskDistill) => Objective { kind: LossKind::TaskDistill, task_weight: 1.0, distill_weight: 1.0 },
            None => base,
        };
        for (flag, given, slot) in [("--task-weight", self.task_weight, &mut o.task_weight), ("--distill-weight", self.distill_weight, &mut o.distill_weight)] {
            if let Some(w) = given {
                if o.kind != LossKind::TaskDistill {
                    bail!("{flag} weighs the parts of --loss task+distill (the loss is {})", o.kind.name());
                }
                if !(w.is_finite() && w >= 0.0) {
                    bail!("{flag} {w}: expected a finite weight ≥ 0");
                }
                *slot = w;
            }
        }
        if o.task_weight == 0.0 && o.distill_weight == 0.0 {
            bail!("--task-weight 0 and --distill-weight 0: nothing left to train");
        }
        Ok(o)
    }

    fn apply_schedule(&self, s: &mut QatSettings) -> Result<()> {
        if let Some(shape) = self.lr_schedule {
            s.schedule.shape = match shape {
                LrShapeArg::Seed => LrShape::Seed,
                LrShapeArg::Constant => LrShape::Constant,
                LrShapeArg::Cosine => LrShape::Cosine,
            };
        }
        if let Some(lr) = self.lr {
            s.schedule.base = positive("--lr", lr)?;
        }
        if let Some(f) = self.lrf {
            if !(f.is_finite() && f > 0.0 && f <= 1.0) {
                bail!("--lrf {f}: expected a fraction in (0, 1]");
            }
            s.schedule.final_frac = f;
        }
        if let Some(w) = self.warmup_iters {
            s.schedule.warmup_iters = w;
        }
        s.schedule.base *= positive("--lr-scale", self.lr_scale)?;
        Ok(())
    }

    fn apply_ema(&self, s: &mut QatSettings) -> Result<()> {
        if self.no_ema {
            if self.ema_decay.is_some() || self.ema_tau.is_some() {
                bail!("--no-ema with --ema-decay/--ema-tau: choose one");
            }
            s.ema = None;
            return Ok(());
        }
        let wanted = self.ema || self.ema_decay.is_some() || self.ema_tau.is_some() || s.ema.is_some();
        if !wanted {
            return Ok(());
        }
        let (mut decay, mut tau) = s.ema.unwrap_or((0.999, 200.0));
        if let Some(d) = self.ema_decay {
            if !(d.is_finite() && d > 0.0 && d < 1.0) {
                bail!("--ema-decay {d}: expected a number in (0, 1), e.g. 0.999");
            }
            decay = d;
        }
        if let Some(t) = self.ema_tau {
            tau = positive("--ema-tau", t)?;
        }
        s.ema = Some((decay, tau));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(extra: &[&str]) -> Args {
        let mut argv = vec!["yolo-qat", "--weights", "w.pt"];
        argv.extend(extra);
        Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}")).args
    }

    #[test]
    fn seed_recipe_is_the_reference() {
        let s = parse(&["--recipe", "seed"]).settings().unwrap();
        assert_eq!(s, QatSettings::of(Recipe::Seed));
        assert_eq!(s.objective.kind, LossKind::Distill);
        assert!(s.learn_amax.is_none() && s.ema.is_none());
    }

    #[test]
    fn flags_override_the_recipe() {
        let s = parse(&["--recipe", "seed", "--loss", "task+distill", "--task-weight", "2", "--ema", "--learn-amax", "1e-3", "--lr-scale", "10"])
            .settings()
            .unwrap();
        assert_eq!(s.objective.kind, LossKind::TaskDistill);
        assert_eq!((s.objective.task_weight, s.objective.distill_weight), (2.0, 1.0));
        assert_eq!(s.ema, Some((0.999, 200.0)));
        assert_eq!(s.learn_amax, Some(1e-3));
        assert!((s.schedule.base - 1e-5).abs() < 1e-18, "reference 1e-6 × --lr-scale 10");
        let s = parse(&["--learn-amax", "0", "--no-ema"]).settings().unwrap();
        assert!(s.learn_amax.is_none() && s.ema.is_none());
    }

    #[test]
    fn nonsense_is_one_line_naming_the_flag() {
        for (argv, flag) in [
            (vec!["--lr-scale", "nan"], "--lr-scale"),
            (vec!["--lr=-1"], "--lr"),
            (vec!["--epochs", "0"], "--epochs"),
            (vec!["--calib-batches", "0"], "--calib-batches"),
            (vec!["--task-weight", "2"], "--task-weight"),
            (vec!["--ema-decay", "1.5"], "--ema-decay"),
            (vec!["--max-ap-drop=-0.1"], "--max-ap-drop"),
            (vec!["--max-ap-drop", "0.002", "--no-eval-origin"], "--max-ap-drop"),
            (vec!["--learn-amax", "inf"], "--learn-amax"),
        ] {
            let e = parse(&argv).settings().unwrap_err().to_string();
            assert!(e.contains(flag) && !e.contains('\n'), "{argv:?}: {e}");
        }
    }
}
