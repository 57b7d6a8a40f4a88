//! One sampling run, shared by every command and the playground. A [`RunRequest`] (prompt,
//! negative prompt, sampler, guidance, seed, images, and optionally an [`Axis`] to compare
//! along) becomes one column per setting; [`Run::step`] takes step i in every column before
//! any takes step i + 1, and [`Run::finish`] checks the samples. Pictures of a state go
//! through [`Run::decode`], the one place where a decoder sits between the state and the
//! pictures. Tensor work only: no files, no printing, no progress.

pub mod axis;
mod start;

pub use axis::{columns, Axis, Column, MAX_VALUES};
pub use start::Start;

use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::model::LoadedModel;
use crate::pipeline::Guided;
use crate::prompt;
use crate::render::attention::StepMaps;
use crate::rng::{self, Rng};
use crate::sampler::SamplerConfig;
use start::Stepper;

/// Everything one run needs besides the model and its start.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub prompt: String,
    /// Replaces the unconditional branch of guidance; None is the null prompt.
    pub negative_prompt: Option<String>,
    /// The base sampler; its prediction type is replaced by the model's.
    pub sampler: SamplerConfig,
    pub guidance: f64,
    pub seed: u64,
    /// Images per column.
    pub num_images: usize,
    /// The one setting that changes from column to column, if any.
    pub axis: Option<Axis>,
    /// The sampler step to start at (img2img's strength, `--start-step`).
    pub start_step: usize,
    /// Steps whose input gets cross-attention maps (column 0, image 0; text models).
    pub attention_steps: Vec<usize>,
}

/// A prompt and its negative (or the null prompt) as condition ids.
pub fn condition_ids(
    model: &LoadedModel,
    prompt: &str,
    negative: Option<&str>,
) -> Result<(Vec<u32>, Vec<u32>)> {
    let unet = &model.meta.unet;
    let ids = prompt::encode(prompt, unet)?;
    let neg = match negative {
        Some(p) => prompt::encode(p, unet)?,
        None => prompt::null_ids(unet),
    };
    Ok((ids, neg))
}

/// One column being computed.
struct ColumnState<'m> {
    setting: Column,
    guided: Guided<'m>,
    stepper: Stepper<'m>,
    rng: Rng,
    /// The current state `[K, C, H, W]`.
    x: Tensor,
}

/// One column's step.
pub struct ColumnStep {
    /// The timestep the step denoised from.
    pub t: usize,
    /// The state after the step, the x0 guess and the model output (ε̂ for ε-prediction),
    /// each `[K, C, H, W]` in model space.
    pub x: Tensor,
    pub x0: Tensor,
    pub model_output: Tensor,
}

/// What one call of [`Run::step`] did.
pub struct StepOutput {
    /// The step's index, 0-based.
    pub i: usize,
    /// Per column; None where the column had no step left.
    pub columns: Vec<Option<ColumnStep>>,
    /// The word maps of the step's input, where asked for.
    pub attention: Option<StepMaps>,
}

/// A sampling run in progress.
pub struct Run<'m> {
    model: &'m LoadedModel,
    ids: Vec<u32>,
    columns: Vec<ColumnState<'m>>,
    attention_steps: Vec<usize>,
    /// The next step's index.
    next: usize,
}

impl<'m> Run<'m> {
    /// Encodes the prompts, builds every column's guidance and sampler and draws its start,
    /// each column from its own seed.
    pub fn new(model: &'m LoadedModel, request: &RunRequest, start: &Start) -> Result<Self> {
        let (ids, neg) = condition_ids(model, &request.prompt, request.negative_prompt.as_deref())?;
        let base = Column {
            sampler: request.sampler,
            guidance: request.guidance,
            seed: request.seed,
            label: String::new(),
        };
        let k = request.num_images;
        let mut states = Vec::new();
        for mut setting in columns(&base, request.axis.as_ref()) {
            setting.sampler = model.with_prediction(setting.sampler);
            let guided = model.guided(
                setting.guidance,
                &vec![ids.clone(); k],
                &vec![neg.clone(); k],
            )?;
            let mut rng = rng::rng(setting.seed);
            let (x, stepper) = start.begin(
                model,
                setting.sampler,
                &guided,
                &mut rng,
                request.start_step,
            )?;
            states.push(ColumnState {
                setting,
                guided,
                stepper,
                rng,
                x,
            });
        }
        Ok(Self {
            model,
            ids,
            columns: states,
            attention_steps: request.attention_steps.clone(),
            next: request.start_step,
        })
    }

    /// The condition ids of the prompt.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// The columns' settings.
    pub fn settings(&self) -> Vec<&Column> {
        self.columns.iter().map(|c| &c.setting).collect()
    }

    /// Column `c`'s timesteps (RePaint's with its undo steps).
    pub fn timesteps(&self, c: usize) -> &[usize] {
        self.columns[c].stepper.timesteps()
    }

    /// The longest column's number of steps.
    pub fn steps(&self) -> usize {
        let n = self.columns.iter().map(|c| c.stepper.timesteps().len());
        n.max().unwrap_or(0)
    }

    /// The next step's index.
    pub fn next_step(&self) -> usize {
        self.next
    }

    /// Column `c`'s current state `[K, C, H, W]`.
    pub fn state(&self, c: usize) -> &Tensor {
        &self.columns[c].x
    }

    /// The pictures of a state `[K, C, H, W]` in model space, in picture space `[K, 3, H, W]`
    /// in [-1, 1]. Pixel-space models show the state itself.
    pub fn decode(&self, x: &Tensor) -> Result<Tensor> {
        self.model.decode(x)
    }

    /// Whether the state is a latent model's latents (and pictures are decoded from it).
    pub fn is_latent(&self) -> bool {
        self.model.vae.is_some()
    }

    /// Takes the next step in every column that has one; None once every column is done.
    pub fn step(&mut self) -> Result<Option<StepOutput>> {
        let i = self.next;
        if i >= self.steps() {
            return Ok(None);
        }
        let attention = match self.attention_steps.contains(&i) {
            true => Some(self.word_maps(0, i)?),
            false => None,
        };
        let mut out = Vec::with_capacity(self.columns.len());
        for c in &mut self.columns {
            let Some(&t) = c.stepper.timesteps().get(i) else {
                out.push(None);
                continue;
            };
            let (x, x0, model_output) = c.stepper.step(&c.guided, &mut c.rng, i, &c.x)?;
            c.x = x.clone(); // [K, C, H, W]
            out.push(Some(ColumnStep {
                t,
                x,
                x0,
                model_output,
            }));
        }
        self.next += 1;
        Ok(Some(StepOutput {
            i,
            columns: out,
            attention,
        }))
    }

    /// The cross-attention maps of image 0 of column `c`'s current state, as the input of
    /// step `i`, for every word of the prompt.
    pub fn word_maps(&self, c: usize, i: usize) -> Result<StepMaps> {
        let col = &self.columns[c];
        let unet = col.guided.model.text_unet().ok_or_else(|| {
            Error::Unsupported("attention maps need a text model with cross-attention".into())
        })?;
        let t = col.stepper.timesteps()[i];
        let cond = crate::unet::cond_tensor(std::slice::from_ref(&self.ids), unet.device())?; // [1, L]
        let maps = unet.word_maps(&col.x.narrow(0, 0, 1)?, t as f64, &cond)?; // [L, H, W]
        let words = self.ids.iter().take_while(|&&id| id != 0).count();
        let words = (0..words)
            .map(|w| Ok(maps.get(w)?.flatten_all()?.to_vec1::<f32>()?))
            .collect::<Result<Vec<_>>>()?;
        Ok(StepMaps {
            label: format!("t={t}"),
            words,
        })
    }

    /// The final pictures, one `[K, 3, H, W]` per column in [-1, 1]; fails when sampling
    /// produced NaN or infinite values (broken weights would otherwise give black pictures
    /// without a word).
    pub fn finish(self) -> Result<Vec<Tensor>> {
        self.columns
            .iter()
            .map(|c| {
                check_finite(&c.x, self.model)?;
                self.decode(&c.x)
            })
            .collect()
    }
}

fn check_finite(x: &Tensor, model: &LoadedModel) -> Result<()> {
    let values = x
        .flatten_all()?
        .to_dtype(candle_core::DType::F32)?
        .to_vec1::<f32>()?;
    if values.iter().all(|v| v.is_finite()) {
        return Ok(());
    }
    Err(Error::File {
        name: model.name.clone(),
        reason: "sampling produced NaN or infinite values; the weights may be broken".into(),
    })
}
