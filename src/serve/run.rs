//! One playground run, step by step: every variant (column) of the run takes step i before
//! any takes step i + 1, and each step's x_t, x0 guess and predicted noise go out as PNG data
//! URLs at once. Seeds, samplers and defaults are those of `diffuse generate`, so a run's
//! final images equal the command's samples for the same settings.

use std::time::Instant;

use axum::response::sse::Event;
use base64::Engine as _;
use candle_core::Tensor;
use serde::Serialize;

use super::jobs::{json_event, JobSpec};
use crate::error::Result;
use crate::model::LoadedModel;
use crate::pipeline::{self, Guided};
use crate::render;
use crate::rng;
use crate::sampler::Sampler;

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
    /// The predicted noise, shown at ±2σ.
    eps: Vec<String>,
}

/// The `start` event: the pure noise every column starts from and its timesteps.
#[derive(Serialize)]
struct Start<'a> {
    spec: &'a JobSpec,
    timesteps: Vec<Vec<usize>>,
    x_t: Vec<Vec<String>>,
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

/// One column being computed.
struct Column<'m> {
    guided: Guided<'m>,
    sampler: Box<dyn Sampler + 'm>,
    rng: rng::Rng,
    x: Tensor,
    /// Image 0's x_t after every step, for the GIF.
    frames: Vec<image::RgbImage>,
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
    let k = spec.num_images;
    let mut columns = Vec::with_capacity(spec.variants.len());
    for v in &spec.variants {
        let ids = vec![spec.ids.clone(); k];
        let guided = model.guided(v.guidance, &ids, &vec![spec.neg.clone(); k])?;
        let sampler = model.sampler(spec.sampler_config(model, v.sampler))?;
        let mut rng = rng::rng(v.seed);
        let x = pipeline::initial_noise(&guided, &mut rng)?; // [K, C, H, W]
        columns.push(Column {
            guided,
            sampler,
            rng,
            x,
            frames: Vec::new(),
        });
    }
    let start = Start {
        spec,
        timesteps: columns
            .iter()
            .map(|c| c.sampler.timesteps().to_vec())
            .collect(),
        x_t: columns.iter().map(|c| urls(&c.x)).collect::<Result<_>>()?,
    };
    if !emit(json_event("start", &start)) {
        return Ok(Outcome::Cancelled);
    }
    let mut first_step_ms = 0.0;
    for i in 0..spec.steps {
        let t0 = Instant::now();
        let mut pictures = Vec::with_capacity(columns.len());
        for c in &mut columns {
            let t = c.sampler.timesteps()[i];
            let (next, x0, eps) =
                pipeline::guided_step(&c.guided, c.sampler.as_mut(), &mut c.rng, i, &c.x)?;
            c.x = next; // [K, C, H, W]
            c.frames.push(render::to_rgb8(&c.x.get(0)?)?);
            pictures.push(Pictures {
                t,
                x_t: urls(&c.x)?,
                x0: urls(&x0)?,
                eps: urls(&eps.affine(0.5, 0.0)?)?, // ±2σ → [-1, 1]
            });
        }
        if i == 0 {
            first_step_ms = ms(began);
        }
        let step = Step {
            step: i + 1,
            steps: spec.steps,
            columns: pictures,
            ms: ms(t0),
        };
        if !emit(json_event("step", &step)) {
            return Ok(Outcome::Cancelled);
        }
    }
    let done = finish(spec, &columns, first_step_ms, began)?;
    emit(json_event("done", &done));
    Ok(Outcome::Finished)
}

/// The final images, a GIF per column and the attention maps.
fn finish(spec: &JobSpec, columns: &[Column], first_step_ms: f64, began: Instant) -> Result<Done> {
    let mut gifs = Vec::with_capacity(columns.len());
    for c in columns {
        let picked = render::evenly_chosen(c.frames.len(), 100);
        let frames: Vec<image::RgbImage> = picked
            .into_iter()
            .map(|i| render::upscale(&c.frames[i], 4))
            .collect();
        let gif = render::animation::gif_bytes(&frames, crate::jobs::generate::DEFAULT_FPS)?;
        gifs.push(format!(
            "data:image/gif;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(gif)
        ));
    }
    let attention = match (spec.attention, columns.first()) {
        (true, Some(c)) => attention(spec, c)?,
        _ => Vec::new(),
    };
    Ok(Done {
        finals: columns.iter().map(|c| urls(&c.x)).collect::<Result<_>>()?,
        gifs,
        attention,
        first_step_ms,
        total_ms: ms(began),
    })
}

/// Per prompt word, a heat map of where image 0 attends to it at the last step's input,
/// over the final image.
fn attention(spec: &JobSpec, c: &Column) -> Result<Vec<(String, String)>> {
    let Some(unet) = c.guided.model.text_unet() else {
        return Ok(Vec::new());
    };
    let t = *c.sampler.timesteps().last().unwrap_or(&0);
    let cond = crate::unet::cond_tensor(std::slice::from_ref(&spec.ids), unet.device())?; // [1, L]
    let maps = unet.word_maps(&c.x.narrow(0, 0, 1)?, t as f64, &cond)?; // [L, H, W]
    let base = render::to_rgb8(&c.x.get(0)?)?;
    let words = crate::text::tokenizer::words(&spec.prompt);
    words
        .into_iter()
        .enumerate()
        .take(maps.dim(0)?)
        .map(|(w, word)| {
            let map = maps.get(w)?.flatten_all()?.to_vec1::<f32>()?;
            let lo = map.iter().copied().fold(f32::INFINITY, f32::min);
            let hi = map.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let img = render::attention::heat(&map, (lo, hi), &base);
            Ok((word, data_url(&render::upscale(&img, 4))?))
        })
        .collect()
}
