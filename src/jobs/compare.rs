//! `diffuse compare`: one prompt, one starting noise, several values of one setting
//! (guidance, sampler, steps or seed), drawn as one picture with a labelled row per value:
//! each row shows the run's states from noise to the final image.

use std::fmt;
use std::path::PathBuf;

use image::RgbImage;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::io::fs;
use crate::model::LoadedModel;
use crate::pipeline::{self, StepEvent};
use crate::progress::Progress;
use crate::prompt;
use crate::render::{self, frame::default_scale};
use crate::rng;
use crate::sampler::{SamplerConfig, SamplerKind};

/// The most rows.
pub const MAX_VALUES: usize = 8;
/// States per row by default, and at most.
pub const DEFAULT_FRAMES: usize = 6;
pub const MAX_FRAMES: usize = 16;

/// The setting that changes from row to row.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Axis {
    Guidance(Vec<f64>),
    Sampler(Vec<SamplerKind>),
    Steps(Vec<usize>),
    Seed(Vec<u64>),
}

impl Axis {
    fn len(&self) -> usize {
        match self {
            Axis::Guidance(v) => v.len(),
            Axis::Sampler(v) => v.len(),
            Axis::Steps(v) => v.len(),
            Axis::Seed(v) => v.len(),
        }
    }

    /// The flag the values came from.
    pub fn flag(&self) -> &'static str {
        match self {
            Axis::Guidance(_) => "guidance",
            Axis::Sampler(_) => "sampler",
            Axis::Steps(_) => "steps",
            Axis::Seed(_) => "seed",
        }
    }
}

/// One row's setting.
struct Setting {
    config: SamplerConfig,
    guidance: f64,
    seed: u64,
    label: String,
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

/// Everything `diffuse compare` needs; the axis's values replace the base setting per row.
pub struct CompareOptions {
    pub prompt: String,
    pub axis: Axis,
    pub sampler: SamplerConfig,
    pub guidance: f64,
    pub seed: u64,
    pub frames: usize,
    pub scale: Option<u32>,
    pub out: PathBuf,
    pub force: bool,
}

/// What was done.
#[derive(Debug, Clone, Serialize)]
pub struct CompareReport {
    pub command: &'static str,
    pub prompt: String,
    pub axis: Axis,
    pub rows: Vec<String>,
    pub seed: u64,
    #[serde(serialize_with = "crate::jobs::lossy::path")]
    pub out: PathBuf,
    pub model: String,
}

fn settings(opts: &CompareOptions) -> Vec<Setting> {
    let base = |label: String| Setting {
        config: opts.sampler,
        guidance: opts.guidance,
        seed: opts.seed,
        label,
    };
    match &opts.axis {
        Axis::Guidance(v) => v
            .iter()
            .map(|&g| Setting {
                guidance: g,
                ..base(format!("guidance {g}"))
            })
            .collect(),
        Axis::Sampler(v) => v
            .iter()
            .map(|&k| {
                // The sampler's own diffusers defaults, with the run's η and x0 treatment.
                let b = &opts.sampler;
                let config = SamplerConfig {
                    eta: b.eta,
                    thresholding: b.thresholding,
                    clip_sample: b.clip_sample,
                    ..SamplerConfig::new(k, b.steps)
                };
                Setting {
                    config,
                    ..base(format!("{k}"))
                }
            })
            .collect(),
        Axis::Steps(v) => v
            .iter()
            .map(|&n| Setting {
                config: SamplerConfig {
                    steps: n,
                    ..opts.sampler
                },
                ..base(format!("{n} steps"))
            })
            .collect(),
        Axis::Seed(v) => v
            .iter()
            .map(|&s| Setting {
                seed: s,
                ..base(format!("seed {s}"))
            })
            .collect(),
    }
}

fn check(opts: &CompareOptions) -> Result<()> {
    let n = opts.axis.len();
    if !(2..=MAX_VALUES).contains(&n) {
        return Err(Error::option(
            opts.axis.flag(),
            n,
            format!("give 2..={MAX_VALUES} comma-separated values to compare"),
        ));
    }
    if !(2..=MAX_FRAMES).contains(&opts.frames) {
        return Err(Error::out_of_range(
            "frames",
            opts.frames,
            format!("2..={MAX_FRAMES}"),
        ));
    }
    if let Axis::Guidance(v) = &opts.axis {
        if let Some(g) = v.iter().find(|g| !(g.is_finite() && **g >= 0.0)) {
            return Err(Error::option_is("guidance", g, "must be a number ≥ 0"));
        }
    }
    crate::render::frame::check_scale(opts.scale)?;
    Ok(())
}

/// One row: `frames` evenly chosen states of the run (noise first, the final image last),
/// each labelled with its timestep.
fn row(
    model: &LoadedModel,
    ids: &[u32],
    s: &Setting,
    frames: usize,
    scale: u32,
) -> Result<RgbImage> {
    let unet = &model.meta.unet;
    let guided = model.guided(s.guidance, &[ids.to_vec()], &[prompt::null_ids(unet)])?;
    let mut sampler = model.sampler(s.config)?;
    let timesteps = sampler.timesteps().to_vec();
    let n = timesteps.len();
    let keep = render::evenly_chosen(n + 1, frames);
    let mut rng = rng::rng(s.seed);
    let noise = pipeline::initial_noise(&guided, &mut rng)?; // [1, C, H, W]
    let mut states = vec![(
        render::to_rgb8(&noise.get(0)?)?,
        format!("noise t={}", timesteps[0]),
    )];
    let mut failed = None;
    pipeline::denoise_from(
        &guided,
        sampler.as_mut(),
        &mut rng,
        0,
        noise,
        |e: StepEvent| {
            if keep.contains(&(e.i + 1)) && failed.is_none() {
                let label = if e.i + 1 == n {
                    "final".to_string()
                } else {
                    format!("t={}", e.t)
                };
                match e
                    .x
                    .get(0)
                    .map_err(Error::from)
                    .and_then(|x| render::to_rgb8(&x))
                {
                    Ok(img) => states.push((img, label)),
                    Err(err) => failed = Some(err),
                }
            }
        },
    )?;
    if let Some(err) = failed {
        return Err(err);
    }
    let big: Vec<RgbImage> = states
        .iter()
        .map(|(i, _)| render::upscale(i, scale))
        .collect();
    let refs: Vec<&RgbImage> = big.iter().collect();
    let labels: Vec<String> = states.into_iter().map(|(_, l)| l).collect();
    Ok(render::grid(&refs, refs.len(), 2, Some(&labels)))
}

/// Runs `diffuse compare` on the model's device and writes the picture.
pub fn run(
    model: &LoadedModel,
    opts: &CompareOptions,
    progress: &dyn Progress,
) -> Result<CompareReport> {
    check(opts)?;
    let ids = prompt::encode(&opts.prompt, &model.meta.unet)?;
    let settings = settings(opts);
    for s in &settings {
        model.sampler(s.config)?; // every row's steps and sampler, before any work
    }
    fs::check_overwrite(&opts.out, opts.force)?;
    let scale = opts
        .scale
        .unwrap_or_else(|| default_scale(model.meta.unet.image_size).min(4));
    progress.stage("sampling", settings.len() as u64);
    let mut rows = Vec::with_capacity(settings.len());
    for s in &settings {
        rows.push((s.label.clone(), row(model, &ids, s, opts.frames, scale)?));
        progress.advance(1);
    }
    progress.finish();
    let title = format!(
        "\"{}\", seed {}: one row per {}",
        opts.prompt,
        opts.seed,
        opts.axis.flag()
    );
    render::save_png(&render::labelled_rows(&title, &rows), &opts.out)?;
    Ok(CompareReport {
        command: "compare",
        prompt: opts.prompt.clone(),
        axis: opts.axis.clone(),
        rows: settings.iter().map(|s| s.to_string()).collect(),
        seed: opts.seed,
        out: opts.out.clone(),
        model: model.name.clone(),
    })
}
