//! AdamW (Loshchilov & Hutter) with its moments exposed, so checkpoints can save and restore
//! them exactly; plus the learning-rate schedule (linear warm-up, cosine decay) and global
//! gradient-norm clipping.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use serde::{Deserialize, Serialize};

/// AdamW hyper-parameters (PyTorch's defaults but for the learning rate).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// AdamW over named variables, with first and second moments `m`, `v` per variable.
pub struct AdamW {
    pub config: AdamWConfig,
    /// (name, variable, m, v), in name order.
    pub state: Vec<(String, Var, Tensor, Tensor)>,
    /// Number of steps taken (for bias correction).
    pub t: u64,
}

impl AdamW {
    /// Starts with zero moments for `vars` (sorted by name for a stable order).
    pub fn new(mut vars: Vec<(String, Var)>, config: AdamWConfig) -> Result<Self> {
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let state = vars
            .into_iter()
            .map(|(n, v)| {
                let z = v.as_tensor().zeros_like()?;
                Ok((n, v, z.clone(), z))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            config,
            state,
            t: 0,
        })
    }

    /// One update at learning rate `lr`, with gradients scaled by `grad_scale` (for clipping).
    pub fn step(&mut self, grads: &GradStore, lr: f64, grad_scale: f64) -> Result<()> {
        self.t += 1;
        let c = self.config;
        let bc1 = 1.0 - c.beta1.powi(self.t as i32);
        let bc2 = 1.0 - c.beta2.powi(self.t as i32);
        for (_, var, m, v) in self.state.iter_mut() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let g = g.affine(grad_scale, 0.0)?;
            *m = ((m.affine(c.beta1, 0.0)? + g.affine(1.0 - c.beta1, 0.0)?)?).detach();
            *v = ((v.affine(c.beta2, 0.0)? + g.sqr()?.affine(1.0 - c.beta2, 0.0)?)?).detach();
            let m_hat = m.affine(1.0 / bc1, 0.0)?;
            let denom = v.affine(1.0 / bc2, 0.0)?.sqrt()?.affine(1.0, c.eps)?;
            let theta = var.as_tensor().affine(1.0 - lr * c.weight_decay, 0.0)?;
            let next = (theta - (m_hat / denom)?.affine(lr, 0.0)?)?;
            var.set(&next)?;
        }
        Ok(())
    }
}

impl AdamW {
    /// One update with the gradients clipped to global L2 norm `clip` (scaled, not cut);
    /// returns the norm before clipping.
    pub fn step_clipped(&mut self, grads: &GradStore, lr: f64, clip: f64) -> Result<f64> {
        let vars: Vec<&Var> = self.state.iter().map(|s| &s.1).collect();
        let norm = grad_norm(grads, &vars)?;
        let scale = if norm > clip { clip / norm } else { 1.0 };
        self.step(grads, lr, scale)?;
        Ok(norm)
    }

    /// Moves `ema` (every weight by name) towards the current weights: decay
    /// min(`ema_decay`, (1 + step) / (10 + step)), the warm-up of denoising-diffusion-pytorch.
    pub fn update_ema(
        &self,
        ema: &mut std::collections::HashMap<String, Tensor>,
        step: u64,
        ema_decay: f64,
    ) -> Result<()> {
        let n = step as f64;
        let decay = ema_decay.min((1.0 + n) / (10.0 + n));
        for (name, var, _, _) in &self.state {
            let e = &ema[name];
            // Detached: otherwise every EMA tensor would keep the previous one alive through
            // the autograd graph, and memory would grow with every step.
            let next =
                (e.affine(decay, 0.0)? + var.as_tensor().affine(1.0 - decay, 0.0)?)?.detach();
            ema.insert(name.clone(), next);
        }
        Ok(())
    }
}

/// The global L2 norm of the gradients of `vars`.
pub fn grad_norm(grads: &GradStore, vars: &[&Var]) -> Result<f64> {
    let mut total = 0f64;
    for v in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            total += g
                .sqr()?
                .sum_all()?
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()?;
        }
    }
    Ok(total.sqrt())
}

/// Learning rate at `step` (0-based): linear warm-up over `warmup` steps to `peak`, then a
/// cosine decay to `peak · final_fraction` at `total`.
pub fn lr_at(step: u64, total: u64, warmup: u64, peak: f64, final_fraction: f64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((step - warmup) as f64 / span).min(1.0);
    let floor = peak * final_fraction;
    floor + (peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}
