//! A diffusers scheduler config (`scheduler_config.json` of `DDPMScheduler`,
//! `DDIMScheduler`, …) mapped onto diffuse's schedule and sampler options. Values diffuse
//! cannot reproduce (a learned variance, an unknown β schedule) are errors that name the key.

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::sampler::{SamplerConfig, SamplerKind, TimestepSpacing};
use crate::schedule::{BetaSchedule, ScheduleConfig};
use crate::unet::Prediction;

/// The keys of a scheduler config diffuse reads; others (such as `_class_name`) are kept
/// only for reporting.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SchedulerConfig {
    #[serde(rename = "_class_name", default)]
    pub class_name: Option<String>,
    #[serde(default = "default_timesteps")]
    pub num_train_timesteps: usize,
    #[serde(default = "default_beta_start")]
    pub beta_start: f64,
    #[serde(default = "default_beta_end")]
    pub beta_end: f64,
    #[serde(default = "default_beta_schedule")]
    pub beta_schedule: String,
    #[serde(default)]
    pub variance_type: Option<String>,
    #[serde(default = "default_true")]
    pub clip_sample: bool,
    #[serde(default)]
    pub prediction_type: Option<String>,
    #[serde(default)]
    pub timestep_spacing: Option<String>,
    #[serde(default)]
    pub steps_offset: usize,
    #[serde(default)]
    pub thresholding: bool,
    #[serde(default)]
    pub trained_betas: Option<serde_json::Value>,
}

// diffusers' `DDPMScheduler` defaults, which are diffuse's own schedule defaults.
fn default_timesteps() -> usize {
    ScheduleConfig::default().train_timesteps
}
fn default_beta_start() -> f64 {
    ScheduleConfig::default().beta_start
}
fn default_beta_end() -> f64 {
    ScheduleConfig::default().beta_end
}
fn default_beta_schedule() -> String {
    "linear".into()
}
fn default_true() -> bool {
    true
}

fn config_err(reason: String) -> Error {
    Error::Config {
        what: "diffusers scheduler",
        reason,
    }
}

impl SchedulerConfig {
    /// Reads `scheduler_config.json` text and checks it; `name` names the file in errors.
    pub fn from_json(text: &str, name: &str) -> Result<Self> {
        let c: Self = serde_json::from_str(text)
            .map_err(|e| config_err(format!("{name}: {}", e.to_string().replace('\n', " "))))?;
        c.schedule()?;
        c.sampler(SamplerKind::Ddpm, 1)?;
        Ok(c)
    }

    /// The noise schedule it describes.
    pub fn schedule(&self) -> Result<ScheduleConfig> {
        if self.trained_betas.as_ref().is_some_and(|b| !b.is_null()) {
            return Err(config_err(
                "trained_betas is not supported (diffuse computes β from beta_schedule)".into(),
            ));
        }
        let beta_schedule: BetaSchedule = self
            .beta_schedule
            .parse()
            .map_err(|_| config_err(format!("beta_schedule = {} is not supported (linear, scaled_linear, squaredcos_cap_v2, sigmoid)", self.beta_schedule)))?;
        Ok(ScheduleConfig {
            beta_schedule,
            train_timesteps: self.num_train_timesteps,
            beta_start: self.beta_start,
            beta_end: self.beta_end,
        })
    }

    /// The sampler options it implies for `kind` at `steps`: `clip_sample`,
    /// `thresholding`, `prediction_type`, `timestep_spacing`, `steps_offset`.
    pub fn sampler(&self, kind: SamplerKind, steps: usize) -> Result<SamplerConfig> {
        if let Some(v) = self.variance_type.as_deref() {
            if !["fixed_small", "fixed_small_log"].contains(&v) {
                return Err(config_err(format!(
                    "variance_type = {v} is not supported (diffuse's DDPM uses fixed_small)"
                )));
            }
        }
        let mut config = SamplerConfig {
            clip_sample: self.clip_sample,
            thresholding: self.thresholding,
            steps_offset: self.steps_offset,
            ..SamplerConfig::new(kind, steps)
        };
        if let Some(p) = &self.prediction_type {
            config.prediction = match p.as_str() {
                "epsilon" => Prediction::Epsilon,
                "v_prediction" => Prediction::VPrediction,
                other => {
                    return Err(config_err(format!(
                        "prediction_type = {other} is not supported (epsilon, v_prediction)"
                    )))
                }
            };
        }
        if let Some(s) = &self.timestep_spacing {
            config.timestep_spacing = s.parse::<TimestepSpacing>().map_err(|_| {
                config_err(format!(
                    "timestep_spacing = {s} is not supported (leading, trailing, linspace)"
                ))
            })?;
        }
        Ok(config)
    }
}
