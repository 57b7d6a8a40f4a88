//! The columns of a run: the request's base setting, or one value per column of the one
//! setting a comparison varies (guidance, sampler, steps or seed).

use std::fmt;

use serde::Serialize;

use crate::defaults::check_guidance;
use crate::error::{Error, Result};
use crate::sampler::{SamplerConfig, SamplerKind};

/// The most columns one comparison draws.
pub const MAX_VALUES: usize = 8;

/// The setting that changes from column to column.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Axis {
    Guidance(Vec<f64>),
    Sampler(Vec<SamplerKind>),
    Steps(Vec<usize>),
    Seed(Vec<u64>),
}

impl Axis {
    /// How many values it has.
    pub fn len(&self) -> usize {
        match self {
            Axis::Guidance(v) => v.len(),
            Axis::Sampler(v) => v.len(),
            Axis::Steps(v) => v.len(),
            Axis::Seed(v) => v.len(),
        }
    }

    /// Whether it has no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The option the values came from.
    pub fn flag(&self) -> &'static str {
        match self {
            Axis::Guidance(_) => "guidance",
            Axis::Sampler(_) => "sampler",
            Axis::Steps(_) => "steps",
            Axis::Seed(_) => "seed",
        }
    }

    /// Refuses fewer than 2 or more than `max` values, and guidance values that
    /// [`check_guidance`] refuses.
    pub fn check(&self, max: usize) -> Result<()> {
        let n = self.len();
        if !(2..=max).contains(&n) {
            return Err(Error::option(
                self.flag(),
                n,
                format!("give 2..={max} comma-separated values to compare"),
            ));
        }
        if let Axis::Guidance(v) = self {
            for &g in v {
                check_guidance("guidance", g)?;
            }
        }
        Ok(())
    }
}

/// One column's setting.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Column {
    pub sampler: SamplerConfig,
    pub guidance: f64,
    pub seed: u64,
    /// What the column shows, e.g. "guidance 7" or "ddim".
    pub label: String,
}

impl fmt::Display for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

/// The columns: the base setting alone, or one per value of `axis`. A sampler value takes
/// that sampler's own diffusers defaults with the base's η, x0 treatment and spacing rule.
pub fn columns(base: &Column, axis: Option<&Axis>) -> Vec<Column> {
    let with = |label: String| Column {
        label,
        ..base.clone()
    };
    let Some(axis) = axis else {
        return vec![base.clone()];
    };
    match axis {
        Axis::Guidance(v) => v
            .iter()
            .map(|&g| Column {
                guidance: g,
                ..with(format!("guidance {g}"))
            })
            .collect(),
        Axis::Sampler(v) => v
            .iter()
            .map(|&k| Column {
                sampler: base.sampler.with_kind(k),
                ..with(format!("{k}"))
            })
            .collect(),
        Axis::Steps(v) => v
            .iter()
            .map(|&n| Column {
                sampler: SamplerConfig {
                    steps: n,
                    ..base.sampler
                },
                ..with(format!("{n} steps"))
            })
            .collect(),
        Axis::Seed(v) => v
            .iter()
            .map(|&s| Column {
                seed: s,
                ..with(format!("seed {s}"))
            })
            .collect(),
    }
}
