//! The QAT settings a recipe stands for, before flags override them.
//!
//! * `seed`: the reference pipeline's QAT (the Python `qat.py` this tool replaces):
//!   layer-wise distillation, Adam at 1e-6 with 1e-5 in epoch 6, 10 epochs × 200
//!   iterations, fixed activation ranges, no weight average.
//! * `default`: what measured best on yolov9-t (docs/results.md): the YOLOv9 task
//!   loss, learned activation ranges (LSQ, Esser et al., ICLR 2020), Adam at 1e-4
//!   with a cosine decay, the moving average of the weights, 5 epochs × 200 iterations.

use super::objective::{LrSchedule, LrShape, Objective};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipe {
    Default,
    Seed,
}

impl Recipe {
    pub fn name(self) -> &'static str {
        match self {
            Recipe::Default => "default",
            Recipe::Seed => "seed",
        }
    }
}

/// Everything that decides how QAT trains.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QatSettings {
    pub objective: Objective,
    pub schedule: LrSchedule,
    pub epochs: usize,
    pub iters: usize,
    /// Adam LR of the learned activation ranges (`None`: ranges stay calibrated).
    pub learn_amax: Option<f64>,
    /// Moving average of the weights: (decay, tau) as upstream's `ModelEMA`.
    pub ema: Option<(f64, f64)>,
}

impl QatSettings {
    pub fn of(recipe: Recipe) -> QatSettings {
        match recipe {
            Recipe::Seed => QatSettings { objective: Objective::distill(), schedule: LrSchedule::seed(), epochs: 10, iters: 200, learn_amax: None, ema: None },
            Recipe::Default => QatSettings {
                objective: Objective::task(),
                schedule: LrSchedule { shape: LrShape::Cosine, base: 1e-4, final_frac: 0.1, warmup_iters: 100 },
                epochs: 5,
                iters: 200,
                learn_amax: Some(1e-3),
                ema: Some((0.999, 200.0)),
            },
        }
    }
}
