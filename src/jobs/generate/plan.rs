//! The checked inputs of a `generate` run: the run's request and start, which states become
//! frames and which steps get attention maps, img2img's start step; every option is checked
//! here, before anything is written.

use candle_core::Tensor;

use super::inpaint::{self, InpaintPlan};
use super::{GenerateOptions, InitImage};
use crate::defaults::MAX_NUM_IMAGES;
use crate::edit::inpaint::InpaintMethod;
use crate::edit::repaint::repaint_timesteps;
use crate::error::{Error, Result};
use crate::jobs::noise_file::{load_noise, NoiseMeta};
use crate::model::LoadedModel;
use crate::pipeline;
use crate::render;
use crate::run::{condition_ids, RunRequest, Start};
use crate::sampler::{SamplerConfig, SamplerKind};
use crate::schedule::NoiseSchedule;

/// The checked inputs of a run: condition ids, the sampler and which states become frames.
pub(super) struct Plan {
    pub(super) ids: Vec<u32>,
    pub(super) config: SamplerConfig,
    pub(super) schedule: NoiseSchedule,
    pub(super) timesteps: Vec<usize>,
    /// img2img: the sampler index it starts at (0 for plain generation).
    pub(super) start: usize,
    /// img2img: the input picture `[3, H, W]` and the strength.
    pub(super) init: Option<(Tensor, f64)>,
    /// img2img: the input picture in model space `[1, C, h, w]` (a latent model's latents).
    pub(super) init_state: Option<Tensor>,
    /// inpaint: the picture, the mask and (for RePaint) the timesteps with their jumps.
    pub(super) inpaint: Option<InpaintPlan>,
    /// `--from-noise`: the starting state `[K, C, H, W]`.
    pub(super) from_noise: Option<Tensor>,
    /// What the run says before it starts (an input picture cropped to a square).
    pub(super) notes: Vec<String>,
    /// States kept as frames: state 0 is the noise (or the input picture for img2img and
    /// inpaint).
    pub(super) keep: Vec<usize>,
    pub(super) scale: u32,
    /// Sampler step indices whose input gets attention maps.
    pub(super) map_steps: Vec<usize>,
}

impl Plan {
    /// Checks every option before anything is written.
    pub(super) fn new(model: &LoadedModel, opts: &GenerateOptions) -> Result<Self> {
        let unet = &model.meta.unet;
        let (ids, _) = condition_ids(model, &opts.prompt, opts.negative_prompt.as_deref())?;
        check_options(opts)?;
        if opts.attention_maps.is_some() && unet.text.is_none() {
            return Err(Error::Unsupported(format!(
                "--attention-maps needs a text model with cross-attention; {} has prompt slots",
                model.name
            )));
        }
        let config = model.with_prediction(opts.sampler);
        let mut timesteps = model.sampler(config)?.timesteps().to_vec();
        let mut notes = Vec::new();
        let init = match &opts.init_image {
            Some(init) => {
                let loaded = model.load_picture(&init.path)?;
                notes.extend(loaded.crop_note(&init.path));
                Some((loaded.x0, init.strength))
            }
            None => None,
        };
        let inpaint = match &opts.inpaint {
            Some(spec) => Some(inpaint::load(model, spec, &mut notes)?),
            None => None,
        };
        if let Some(spec) = opts
            .inpaint
            .as_ref()
            .filter(|s| s.method == InpaintMethod::Repaint)
        {
            let t = model.schedule.len();
            timesteps = repaint_timesteps(t, config.steps, spec.jump_length, spec.jump_n_sample)?;
        }
        let (from_noise, start) = start_state(model, opts, &timesteps)?;
        // img2img and inpaint have the input picture as an extra first state.
        let input = usize::from(init.is_some() || inpaint.is_some());
        let start = start.unwrap_or_else(|| {
            init.as_ref()
                .map_or(0, |(_, s)| pipeline::img2img_start(timesteps.len(), *s))
        });
        let n = timesteps.len();
        if let (Some((_, strength)), None) = (&init, opts.start_step) {
            if start >= n {
                let why = format!(
                    "leaves no step to run at {n} steps (img2img redoes ⌊steps·strength⌋ steps; give at least {:.3})",
                    1.0 / n as f64
                );
                return Err(Error::option_is("strength", strength, why));
            }
        }
        let total_states = n - start + 1 + input;
        let map_steps = match opts.attention_maps {
            Some(m) => render::evenly_chosen(n - start, m)
                .into_iter()
                .map(|i| i + start)
                .collect(),
            None => Vec::new(),
        };
        let init_state = match &init {
            Some((x, _)) => Some(model.encode(&x.unsqueeze(0)?)?),
            None => None,
        };
        let plan = Self {
            init_state,
            map_steps,
            ids,
            config,
            schedule: model.schedule.clone(),
            start,
            init,
            inpaint,
            from_noise,
            notes,
            keep: opts.frames.pick(total_states),
            scale: opts
                .scale
                .unwrap_or_else(|| render::frame::default_scale(model.picture_size())),
            timesteps,
        };
        Ok(plan)
    }

    /// The run's request.
    pub(super) fn request(&self, opts: &GenerateOptions) -> RunRequest {
        RunRequest {
            prompt: opts.prompt.clone(),
            negative_prompt: opts.negative_prompt.clone(),
            sampler: self.config,
            guidance: opts.guidance,
            seed: opts.seed,
            num_images: opts.num_images,
            axis: None,
            start_step: self.start,
            attention_steps: self.map_steps.clone(),
        }
    }

    /// Where the run starts: the noised picture (img2img), the noise around the kept region
    /// (inpaint), the given noise, or seeded pure noise; each with the run's K images.
    pub(super) fn start_state(&self, k: usize) -> Result<Start> {
        if let Some(z) = &self.init_state {
            return Ok(Start::Picture(z.repeat((k, 1, 1, 1))?)); // [K, C, h, w]
        }
        if let Some(i) = &self.inpaint {
            let mut known = i.known.clone();
            known.image = known.image.repeat((k, 1, 1, 1))?; // [K, 3, H, W]
            return Ok(Start::Inpaint {
                known,
                method: i.method,
                repaint_timesteps: self.timesteps.clone(),
            });
        }
        Ok(match &self.from_noise {
            Some(noise) => Start::State(noise.clone()),
            None => Start::Noise,
        })
    }

    /// The input picture of img2img and inpaint in pixel space, `[K, 3, S, S]`.
    pub(super) fn input_pictures(&self, k: usize) -> Result<Option<Tensor>> {
        let picture = match (&self.init, &self.inpaint) {
            (Some((x, _)), _) => x.unsqueeze(0)?,
            (None, Some(i)) => i.pixels.as_ref().unwrap_or(&i.known).image.clone(),
            (None, None) => return Ok(None),
        };
        Ok(Some(picture.repeat((k, 1, 1, 1))?))
    }

    /// The extra input state of img2img and inpaint.
    pub(super) fn offset(&self) -> usize {
        usize::from(self.init.is_some() || self.inpaint.is_some())
    }

    /// A state's label on the strip: "input", "noise", "sample", or the timestep its picture
    /// is at: the start of img2img, then the timestep each step reached.
    pub(super) fn label(&self, state: usize) -> String {
        let (n, offset) = (self.timesteps.len(), self.offset());
        if offset == 1 && state == 0 {
            "input".into()
        } else if state == offset {
            match &self.init {
                Some(_) if self.start < n => format!("t={}", self.timesteps[self.start]),
                Some(_) => "input".into(),
                None if self.start > 0 => format!("t={}", self.timesteps[self.start]),
                None => "noise".into(),
            }
        } else {
            match self.after_step(state - offset - 1 + self.start) {
                AfterStep::NoisedTo(t) | AfterStep::Denoised(_, Some(t)) => format!("t={t}"),
                AfterStep::Denoised(_, None) => "sample".into(),
            }
        }
    }

    /// What sampler step `i` did: noise forward again (RePaint's jumps) or denoise from its
    /// timestep to the next one (`None`: to the final sample).
    fn after_step(&self, i: usize) -> AfterStep {
        let t = self.timesteps[i];
        let repaint = (self.inpaint.as_ref()).is_some_and(|p| p.method == InpaintMethod::Repaint);
        if repaint && i > 0 && t > self.timesteps[i - 1] {
            return AfterStep::NoisedTo(t);
        }
        let next = if repaint {
            let prev = t as i64 - (self.schedule.len() / self.config.steps) as i64;
            (prev >= 0).then_some(prev as usize)
        } else {
            self.timesteps.get(i + 1).copied()
        };
        AfterStep::Denoised(t, next)
    }

    /// Whether `state` is the run's last: the final sample.
    pub(super) fn is_final(&self, state: usize) -> bool {
        state > self.offset() && state == self.timesteps.len() - self.start + self.offset()
    }
}

/// What one sampler step did, for the frames' titles and labels.
enum AfterStep {
    /// RePaint: noised forward again to this timestep.
    NoisedTo(usize),
    /// Denoised from the first timestep to the second (`None`: to the final sample).
    Denoised(usize, Option<usize>),
}

impl Plan {
    /// A state's title on its frame: what it is, which step, and from which timestep to
    /// which; the first frames say what they show.
    pub(super) fn title(&self, state: usize) -> String {
        let (n, offset) = (self.timesteps.len(), self.offset());
        let steps = n - self.start;
        if offset == 1 && state == 0 {
            return match self.inpaint {
                Some(_) => "the input picture; the yellow line marks the region to repaint".into(),
                None => "the input picture".into(),
            };
        }
        if state == offset {
            let Some(t) = self.timesteps.get(self.start) else {
                return "strength 0: the input itself, nothing to denoise".into();
            };
            let what = match (&self.init, &self.inpaint, &self.from_noise) {
                (Some(_), _, _) => format!("the input noised to t={t}"),
                (_, Some(_), _) => format!("noise; around the region, the input noised to t={t}"),
                (_, _, Some(_)) => format!("the given noise, taken to be at t={t}"),
                _ if self.start > 0 => format!("pure noise, taken to be at t={t}"),
                _ => "pure noise".into(),
            };
            return format!("step 0/{steps}: {what}; no guess yet");
        }
        let done = state - offset;
        match self.after_step(done - 1 + self.start) {
            AfterStep::NoisedTo(t) => format!("step {done}/{steps}: noised forward again to t={t}"),
            AfterStep::Denoised(t, Some(next)) => {
                format!("step {done}/{steps}: denoised t={t} -> t={next}")
            }
            AfterStep::Denoised(t, None) => {
                format!("step {done}/{steps}: denoised t={t} -> the final image")
            }
        }
    }
}

fn check_options(opts: &GenerateOptions) -> Result<()> {
    if opts.num_images == 0 || opts.num_images > MAX_NUM_IMAGES {
        let range = format!("1..={MAX_NUM_IMAGES}");
        return Err(Error::out_of_range("num-images", opts.num_images, range));
    }
    crate::defaults::check_guidance("guidance", opts.guidance)?;
    let repaint = opts
        .inpaint
        .as_ref()
        .is_some_and(|i| i.method == InpaintMethod::Repaint);
    let eta = opts.sampler.eta;
    if eta != 0.0 && opts.sampler.kind != SamplerKind::Ddim && !repaint {
        let why = format!(
            "applies to --sampler ddim (and inpaint --method repaint) only; {} takes no η",
            opts.sampler.kind
        );
        return Err(Error::option_is("eta", eta, why));
    }
    opts.frames.validate()?;
    crate::render::frame::check_scale(opts.scale)?;
    if let Some(InitImage { strength, .. }) = &opts.init_image {
        if !(0.0..=1.0).contains(strength) {
            return Err(Error::option_is("strength", strength, "is outside [0, 1]"));
        }
    }
    if opts.attention_maps == Some(0) {
        return Err(Error::option(
            "attention-steps",
            0,
            "record at least one step",
        ));
    }
    crate::render::animation::check_fps(opts.fps)
}

/// The starting state from `--from-noise` (repeated to K images when it holds one), and the
/// step to start at: `--start-step`, else the step a noise file from `diffuse invert` is the
/// state at.
fn start_state(
    model: &LoadedModel,
    opts: &GenerateOptions,
    timesteps: &[usize],
) -> Result<(Option<Tensor>, Option<usize>)> {
    let mut start = opts.start_step;
    if start.is_some() && opts.inpaint.is_some() {
        return Err(Error::Unsupported(
            "--start-step is for generate and img2img; inpaint runs every step".into(),
        ));
    }
    let noise = match &opts.from_noise {
        None => None,
        Some(path) => {
            if opts.init_image.is_some() || opts.inpaint.is_some() {
                return Err(Error::Unsupported(
                    "--from-noise is for generate; img2img and inpaint start from their picture"
                        .into(),
                ));
            }
            let u = &model.meta.unet;
            let chw = [u.in_channels, u.image_size, u.image_size];
            let (noise, meta) = load_noise(path, chw, MAX_NUM_IMAGES, model.device())?;
            let (k, want) = (noise.dim(0)?, opts.num_images);
            if k != 1 && k != want {
                return Err(Error::file(
                    path,
                    format!(
                    "holds {k} starting states but --num-images is {want}; use --num-images {k}"
                ),
                ));
            }
            if let Some(meta) = meta {
                start = Some(check_noise_meta(path, &meta, start, timesteps)?);
            }
            Some(if k == 1 {
                noise.repeat((want, 1, 1, 1))?
            } else {
                noise
            })
        }
    };
    let n = timesteps.len();
    if let Some(s) = start.filter(|s| *s >= n) {
        let range = format!("0..={} (this run has {n} steps)", n - 1);
        return Err(Error::out_of_range("start-step", s, range));
    }
    Ok((noise, start))
}

/// The step a noise file from `diffuse invert` starts at; its timestep must be the run's
/// timestep at that step.
fn check_noise_meta(
    path: &std::path::Path,
    meta: &NoiseMeta,
    start: Option<usize>,
    timesteps: &[usize],
) -> Result<usize> {
    let step = start.unwrap_or(meta.start_step);
    if timesteps.get(step) == Some(&meta.timestep) {
        return Ok(step);
    }
    let here = timesteps
        .get(step)
        .map_or("past the last step".to_string(), |t| format!("at t={t}"));
    Err(Error::file(
        path,
        format!(
            "is the state at t={} (step {} of {} {} steps), but this run's step {step} is {here}; use --sampler {} --steps {} --start-step {}",
            meta.timestep, meta.start_step, meta.sampler.steps, meta.sampler.kind,
            meta.sampler.kind, meta.sampler.steps, meta.start_step
        ),
    ))
}
