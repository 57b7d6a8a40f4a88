//! One playground run, step by step: every variant (column) of the run takes step i before
//! any takes step i + 1, and each step's x_t, x0 guess and predicted noise go out as PNG data
//! URLs at once. It drives the same [`Run`] as `diffuse generate`, so a run's final images
//! equal the command's samples for the same settings.

use std::time::Instant;

use axum::response::sse::Event;
use base64::Engine as _;
use candle_core::Tensor;
use serde::Serialize;

use super::spec::{json_event, JobSpec};
use crate::defaults::SamplingDefaults;
use crate::error::Result;
use crate::model::LoadedModel;
use crate::render;
use crate::render::attention::StepMaps;
use crate::run::{Run, Start as RunStart};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Finished,
    /// The client went away; the run stopped at the next step.
    Cancelled,
}

/// A PNG as a data URL.
pub fn data_url(img: &image::RgbImage) -> Result<String> {
    let png = render::png_bytes(img)?;
    Ok(format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png)
    ))
}

/// Each image of `x` `[K, 3, H, W]` (model space, or noise already scaled to it) as a PNG
/// data URL.
fn urls(x: &Tensor) -> Result<Vec<String>> {
    (0..x.dim(0)?)
        .map(|i| data_url(&render::to_rgb8(&x.get(i)?)?))
        .collect()
}

/// One column's pictures at one step.
#[derive(Serialize)]
struct Pictures {
    t: usize,
    x_t: Vec<String>,
    /// The model's guess of the final image.
    x0: Vec<String>,
    /// The predicted noise, shown at ±2σ (a latent model's as its channel grid).
    eps: Vec<String>,
    /// A latent model's state z_t as its 2×2 channel grid (x_t is then its decoding).
    #[serde(skip_serializing_if = "Option::is_none")]
    z_t: Option<Vec<String>>,
}

/// The `start` event: the pure noise every column starts from and its timesteps.
#[derive(Serialize)]
struct Start<'a> {
    spec: &'a JobSpec,
    timesteps: Vec<Vec<usize>>,
    x_t: Vec<Vec<String>>,
    /// A latent model's starting latents as channel grids.
    #[serde(skip_serializing_if = "Option::is_none")]
    z_t: Option<Vec<Vec<String>>>,
}

/// A latent model's latents `[K, 4, h, w]` as channel-grid data URLs at `side`; None for a
/// pixel model.
fn latent_urls(run: &Run, z: &Tensor, side: usize) -> Result<Option<Vec<String>>> {
    match run.is_latent() {
        true => Ok(Some(urls(&render::latent::channel_grid(z, side)?)?)),
        false => Ok(None),
    }
}

/// A `step` event: step `step` (1-based) of `steps`, one entry per column.
#[derive(Serialize)]
struct Step {
    step: usize,
    steps: usize,
    columns: Vec<Pictures>,
    ms: f64,
}

/// The `done` event.
#[derive(Serialize)]
struct Done {
    /// Per column: the final images (PNG data URLs) and a GIF of image 0's x_t at every step.
    finals: Vec<Vec<String>>,
    gifs: Vec<String>,
    /// Per prompt word: where image 0 of column 0 attends to it (text models, on request).
    attention: Vec<(String, String)>,
    first_step_ms: f64,
    total_ms: f64,
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Runs `spec`, handing every event to `emit`, which returns false once the client is gone.
pub fn run_job(
    model: &LoadedModel,
    spec: &JobSpec,
    mut emit: impl FnMut(Event) -> bool,
) -> Result<Outcome> {
    let began = Instant::now();
    let mut run = Run::new(model, &spec.request, &RunStart::Noise)?;
    let columns = run.settings().len();
    let start = Start {
        spec,
        timesteps: (0..columns).map(|c| run.timesteps(c).to_vec()).collect(),
        x_t: (0..columns)
            .map(|c| urls(&run.decode(run.state(c))?))
            .collect::<Result<_>>()?,
        z_t: (0..columns)
            .map(|c| latent_urls(&run, run.state(c), model.picture_size()))
            .collect::<Result<Option<_>>>()?,
    };
    if !emit(json_event("start", &start)) {
        return Ok(Outcome::Cancelled);
    }
    let (mut first_step_ms, mut maps) = (0.0, None);
    // Image 0's x_t after every step, per column, for the GIFs.
    let mut frames: Vec<Vec<image::RgbImage>> = vec![Vec::new(); columns];
    let mut t0 = Instant::now();
    while let Some(out) = run.step()? {
        maps = out.attention.or(maps);
        let mut pictures = Vec::with_capacity(columns);
        for (c, step) in out.columns.iter().enumerate() {
            let Some(s) = step else { continue };
            let x = run.decode(&s.x)?; // [K, 3, H, W]
            frames[c].push(render::to_rgb8(&x.get(0)?)?);
            let side = x.dim(2)?;
            let eps = match latent_urls(&run, &s.model_output, side)? {
                Some(grid) => grid,
                None => urls(&s.model_output.affine(0.5, 0.0)?)?, // ±2σ → [-1, 1]
            };
            pictures.push(Pictures {
                t: s.t,
                x_t: urls(&x)?,
                x0: urls(&run.decode(&s.x0)?)?,
                eps,
                z_t: latent_urls(&run, &s.x, side)?,
            });
        }
        if out.i == 0 {
            first_step_ms = ms(began);
        }
        let step = Step {
            step: out.i + 1,
            steps: spec.steps,
            columns: pictures,
            ms: ms(t0),
        };
        if !emit(json_event("step", &step)) {
            return Ok(Outcome::Cancelled);
        }
        t0 = Instant::now();
    }
    let finals = run.finish()?; // per column [K, 3, H, W]
    let attention = match (&maps, finals.first()) {
        (Some(m), Some(x)) => attention(spec, m, &render::to_rgb8(&x.get(0)?)?)?,
        _ => Vec::new(),
    };
    let done = Done {
        finals: finals.iter().map(urls).collect::<Result<_>>()?,
        gifs: frames.iter().map(|f| gif_url(f)).collect::<Result<_>>()?,
        attention,
        first_step_ms,
        total_ms: ms(began),
    };
    emit(json_event("done", &done));
    Ok(Outcome::Finished)
}

/// A GIF of `frames` (at most 100, evenly chosen, at 4×) as a data URL.
fn gif_url(frames: &[image::RgbImage]) -> Result<String> {
    let picked = render::evenly_chosen(frames.len(), 100);
    let frames: Vec<image::RgbImage> = picked
        .into_iter()
        .map(|i| render::upscale(&frames[i], 4))
        .collect();
    let gif = render::animation::gif_bytes(&frames, SamplingDefaults::LIBRARY.fps)?;
    Ok(format!(
        "data:image/gif;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(gif)
    ))
}

/// Per prompt word, a heat map of where image 0 of column 0 attends to it at the last step's
/// input, over the final image `base`.
fn attention(
    spec: &JobSpec,
    maps: &StepMaps,
    base: &image::RgbImage,
) -> Result<Vec<(String, String)>> {
    let words = crate::text::tokenizer::words(&spec.prompt);
    words
        .into_iter()
        .zip(&maps.words)
        .map(|(word, map)| {
            let lo = map.iter().copied().fold(f32::INFINITY, f32::min);
            let hi = map.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let img = render::attention::heat(map, (lo, hi), base);
            Ok((word, data_url(&render::upscale(&img, 4))?))
        })
        .collect()
}
