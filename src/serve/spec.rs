//! What a playground run is asked to do, checked: the [`JobSpec`] the queue holds, with the
//! run's request and the columns it lists in its events; and how an event is written.

use axum::response::sse::Event;
use serde::Serialize;

use crate::run::{columns, Column, RunRequest};
use crate::sampler::{SamplerConfig, SamplerKind};

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

pub(super) fn json_event(name: &str, data: &impl Serialize) -> Event {
    let json = serde_json::to_string(data).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    Event::default().event(name).data(json)
}
