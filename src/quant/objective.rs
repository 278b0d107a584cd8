//! What QAT minimizes, and with which learning rate over time.
//!
//! * `distill`: the reference recipe's layer-wise MSE between the fake-quantized
//!   student and its FP teacher (no labels).
//! * `task`: the YOLOv9 training loss on the loader's labels ([`super::task_loss`]),
//!   as in "Quantization and Training of Neural Networks for Efficient
//!   Integer-Arithmetic-Only Inference" (Jacob et al., CVPR 2018): the quantized
//!   model is finetuned on the task itself.
//! * `task+distill`: their weighted sum.

/// Which losses the QAT step adds up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossKind {
    Distill,
    Task,
    TaskDistill,
}

impl LossKind {
    pub fn name(self) -> &'static str {
        match self {
            LossKind::Distill => "distill",
            LossKind::Task => "task",
            LossKind::TaskDistill => "task+distill",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Objective {
    pub kind: LossKind,
    /// Weight of the task loss in `task+distill` (1 otherwise).
    pub task_weight: f64,
    /// Weight of the layer MSE in `task+distill` (1 otherwise).
    pub distill_weight: f64,
}

impl Objective {
    pub fn distill() -> Objective {
        Objective { kind: LossKind::Distill, task_weight: 0.0, distill_weight: 1.0 }
    }

    pub fn task() -> Objective {
        Objective { kind: LossKind::Task, task_weight: 1.0, distill_weight: 0.0 }
    }

    pub fn uses_teacher(&self) -> bool {
        self.kind != LossKind::Task
    }

    pub fn uses_labels(&self) -> bool {
        self.kind != LossKind::Distill
    }
}

/// The shape of the learning rate over a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LrShape {
    /// The reference recipe's: `base` every epoch except 10 × `base` in epoch 6.
    Seed,
    Constant,
    /// Linear warm-up, then a half cosine from `base` down to `base · final_frac`
    /// (Loshchilov & Hutter, "SGDR", ICLR 2017), per iteration.
    Cosine,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    pub shape: LrShape,
    pub base: f64,
    pub final_frac: f64,
    /// Iterations of linear warm-up from 0 (cosine only).
    pub warmup_iters: usize,
}

impl LrSchedule {
    /// The reference recipe: 1e-6, 1e-5 in epoch 6.
    pub fn seed() -> LrSchedule {
        LrSchedule { shape: LrShape::Seed, base: 1e-6, final_frac: 1.0, warmup_iters: 0 }
    }

    /// LR of iteration `iter` of `epoch`, in a run of `epochs × iters`.
    pub fn at(&self, epoch: usize, iter: usize, epochs: usize, iters: usize) -> f64 {
        match self.shape {
            LrShape::Seed => self.base * if epoch == 6 { 10.0 } else { 1.0 },
            LrShape::Constant => self.base,
            LrShape::Cosine => {
                let step = epoch * iters + iter;
                if step < self.warmup_iters {
                    return self.base * (step + 1) as f64 / self.warmup_iters as f64;
                }
                let total = (epochs * iters).saturating_sub(self.warmup_iters).max(1);
                let t = (step - self.warmup_iters) as f64 / total as f64;
                let low = self.base * self.final_frac;
                low + (self.base - low) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_schedule_is_the_recipe() {
        let s = LrSchedule::seed();
        let want = [1e-6, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6, 1e-5, 1e-6, 1e-6, 1e-6];
        for (e, w) in want.iter().enumerate() {
            assert!((s.at(e, 0, 10, 200) - w).abs() < 1e-18, "epoch {e}");
        }
    }

    #[test]
    fn cosine_warms_up_then_falls_to_its_floor() {
        let s = LrSchedule { shape: LrShape::Cosine, base: 1e-4, final_frac: 0.01, warmup_iters: 10 };
        assert!((s.at(0, 0, 2, 100) - 1e-5).abs() < 1e-12, "first warm-up step is base / warmup");
        assert!((s.at(0, 9, 2, 100) - 1e-4).abs() < 1e-12, "warm-up ends at base");
        assert!((s.at(0, 10, 2, 100) - 1e-4).abs() < 1e-12, "cosine starts at base");
        // Half way through the cosine part: the mean of base and floor.
        let mid = 10 + 95;
        assert!((s.at(mid / 100, mid % 100, 2, 100) - (1e-4 + 1e-6) / 2.0).abs() < 1e-12);
        let last = s.at(1, 99, 2, 100);
        assert!(last > 1e-6 && last < 1.01e-6, "{last}");
    }
}
