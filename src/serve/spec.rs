//! What a playground run is asked to do: the `POST /api/generate` body, its checks against
//! the model and the limits (left-out settings take the model's sampling defaults, as
//! `diffuse generate` does), the [`JobSpec`] the queue holds, with the run's request and the
//! columns it lists in its events; and how an event is written.

use axum::response::sse::Event;
use serde::{Deserialize, Serialize};

use super::api::MAX_GUIDANCE;
use super::error::ApiError;
use super::AppState;
use crate::run::{columns, condition_ids, Axis, Column, RunRequest};
use crate::sampler::{SamplerConfig, SamplerKind};

type ApiResult<T> = std::result::Result<T, ApiError>;

/// One column of a run: its sampler, guidance scale and seed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Variant {
    pub sampler: SamplerKind,
    pub guidance: f64,
    pub seed: u64,
}

/// A checked generate request.
#[derive(Debug, Clone, Serialize)]
pub struct JobSpec {
    pub prompt: String,
    pub steps: usize,
    pub num_images: usize,
    /// The base sampler, as the run takes it (run.json's `sampler` in `diffuse generate`).
    pub sampler: SamplerConfig,
    pub variants: Vec<Variant>,
    /// Cross-attention maps per word at the end (text models).
    pub attention: bool,
    /// The run it asks for, as `diffuse generate` would build it.
    #[serde(skip)]
    pub request: RunRequest,
}

impl JobSpec {
    /// The spec of `request`, whose columns `variants` lists.
    pub fn new(request: RunRequest, attention: bool) -> Self {
        let base = Column {
            sampler: request.sampler,
            guidance: request.guidance,
            seed: request.seed,
            label: String::new(),
        };
        let variants = columns(&base, request.axis.as_ref())
            .into_iter()
            .map(|c| Variant {
                sampler: c.sampler.kind,
                guidance: c.guidance,
                seed: c.seed,
            })
            .collect();
        Self {
            prompt: request.prompt.clone(),
            steps: request.sampler.steps,
            num_images: request.num_images,
            sampler: request.sampler,
            variants,
            attention,
            request,
        }
    }
}

/// `POST /api/generate`'s body. Left-out fields take `diffuse generate`'s defaults.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateRequest {
    pub prompt: String,
    #[serde(default)]
    pub negative_prompt: Option<String>,
    #[serde(default)]
    pub sampler: Option<String>,
    #[serde(default)]
    pub steps: Option<usize>,
    #[serde(default)]
    pub guidance: Option<f64>,
    /// Random when left out (the `start` event says which).
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub num_images: Option<usize>,
    /// Side-by-side columns over one setting: `{"seed": [1, 2]}`, `{"guidance": [1, 3, 7]}`
    /// or `{"sampler": ["ddpm", "ddim"]}`; the other settings are shared.
    #[serde(default)]
    pub compare: Option<Compare>,
    /// Attention maps per prompt word at the end (text models).
    #[serde(default)]
    pub attention: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Compare {
    Seed(Vec<u64>),
    Guidance(Vec<f64>),
    Sampler(Vec<String>),
}

fn check_guidance(field: &str, g: f64) -> ApiResult<f64> {
    if g.is_finite() && (0.0..=MAX_GUIDANCE).contains(&g) {
        Ok(g)
    } else {
        Err(ApiError::field(
            field,
            format!("guidance {g} is outside 0..={MAX_GUIDANCE}"),
        ))
    }
}

fn parse_sampler(field: &str, s: &str) -> ApiResult<SamplerKind> {
    s.parse().map_err(|e| ApiError::from_lib(field, e))
}

/// Checks a generate request against the model and the limits; left-out settings take the
/// model's sampling defaults, as `diffuse generate` does.
pub fn check_generate(state: &AppState, r: GenerateRequest) -> ApiResult<JobSpec> {
    let (model, limits) = (&state.model, &state.limits);
    let defaults = model.defaults();
    condition_ids(model, &r.prompt, None).map_err(|e| ApiError::from_lib("prompt", e))?;
    if let Some(p) = &r.negative_prompt {
        condition_ids(model, p, None).map_err(|e| ApiError::from_lib("negative_prompt", e))?;
    }
    let steps = r.steps.unwrap_or(defaults.steps);
    if !(1..=limits.max_steps).contains(&steps) {
        let msg = format!("steps {steps} is outside 1..={}", limits.max_steps);
        return Err(ApiError::field("steps", msg));
    }
    let kind = match &r.sampler {
        Some(s) => parse_sampler("sampler", s)?,
        None => defaults.sampler,
    };
    let axis = match &r.compare {
        None => None,
        Some(c) => Some(compare_axis(c, limits.max_variants)?),
    };
    let columns = axis.as_ref().map_or(1, Axis::len);
    let num_images = r.num_images.unwrap_or(defaults.playground_images);
    let most = if columns > 1 { 1 } else { limits.max_images };
    if !(1..=most).contains(&num_images) {
        let why = if columns > 1 {
            " (a comparison draws one image per column)"
        } else {
            ""
        };
        return Err(ApiError::field(
            "num_images",
            format!("num_images {num_images} is outside 1..={most}{why}"),
        ));
    }
    if r.attention && model.meta.unet.text.is_none() {
        return Err(ApiError::field(
            "attention",
            "attention maps need a text model; this one has prompt slots",
        ));
    }
    let request = RunRequest {
        prompt: r.prompt,
        negative_prompt: r.negative_prompt,
        sampler: model.with_prediction(model.default_sampler(kind, steps)),
        guidance: check_guidance("guidance", r.guidance.unwrap_or(defaults.guidance))?,
        seed: r.seed.unwrap_or_else(crate::rng::random_seed),
        num_images,
        axis,
        start_step: 0,
        attention_steps: if r.attention {
            vec![steps - 1]
        } else {
            Vec::new()
        },
    };
    let spec = JobSpec::new(request, r.attention);
    for v in &spec.variants {
        // Builds each sampler once, so a step count its schedule cannot take fails here, and
        // the columns can step in lockstep.
        let sampler = model
            .sampler(spec.request.sampler.with_kind(v.sampler))
            .map_err(|e| ApiError::from_lib("steps", e))?;
        let n = sampler.timesteps().len();
        if n != spec.steps {
            let msg = format!(
                "{} gives {n} distinct timesteps for steps {}",
                v.sampler, spec.steps
            );
            return Err(ApiError::field("steps", msg));
        }
    }
    Ok(spec)
}

/// The setting a comparison varies, with 2..=`max` checked values.
fn compare_axis(c: &Compare, max: usize) -> ApiResult<Axis> {
    let n = match c {
        Compare::Seed(v) => v.len(),
        Compare::Guidance(v) => v.len(),
        Compare::Sampler(v) => v.len(),
    };
    if !(2..=max).contains(&n) {
        return Err(ApiError::field(
            "compare",
            format!("compare has {n} values; give 2..={max}"),
        ));
    }
    Ok(match c {
        Compare::Seed(v) => Axis::Seed(v.clone()),
        Compare::Guidance(v) => Axis::Guidance(
            v.iter()
                .map(|&g| check_guidance("compare", g))
                .collect::<ApiResult<_>>()?,
        ),
        Compare::Sampler(v) => Axis::Sampler(
            v.iter()
                .map(|s| parse_sampler("compare", s))
                .collect::<ApiResult<_>>()?,
        ),
    })
}

pub(super) fn json_event(name: &str, data: &impl Serialize) -> Event {
    let json = serde_json::to_string(data).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    Event::default().event(name).data(json)
}
