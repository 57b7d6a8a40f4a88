//! `diffuse generate` (and `img2img`): reverse diffusion from seeded noise, or from a noised
//! picture, to images for a prompt, written as frames (x_t row and x0-prediction row), a GIF,
//! a labelled strip, the samples, a grid, `run.json` and optionally the trajectory. Frames
//! stream to disk during sampling.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::Tensor;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::io::image::{load_image, LoadOptions, Size};
use crate::io::{fs, safetensors};
use crate::jobs::{ms, write_run_json};
use crate::model::LoadedModel;
use crate::pipeline::{self, Guided, StepEvent};
use crate::progress::Progress;
use crate::prompt;
use crate::render;
use crate::render::animation::{AnimationWriter, FrameCount};
use crate::render::attention::StepMaps;
use crate::rng::{self, Rng};
use crate::sampler::{self, Sampler, SamplerConfig};
use crate::schedule::NoiseSchedule;

/// The defaults of `diffuse generate` (and of `diffuse eval`, which measures them): the
/// settings that scored best with `diffuse eval` for the shipped model (see its model card).
pub const DEFAULT_SAMPLER: sampler::SamplerKind = sampler::SamplerKind::Ddpm;
pub const DEFAULT_STEPS: usize = 20;
pub const DEFAULT_GUIDANCE: f64 = 3.0;
/// Images side by side.
pub const DEFAULT_NUM_IMAGES: usize = 4;
/// The most images one run makes.
pub const MAX_NUM_IMAGES: usize = 64;
/// DDIM's η: deterministic.
pub const DEFAULT_ETA: f64 = 0.0;
/// GIF speed.
pub const DEFAULT_FPS: f64 = 10.0;
/// img2img: how much of the schedule is redone.
pub const DEFAULT_STRENGTH: f64 = 0.6;
/// The largest `--scale`: frames stay below the GIF's 65,535-pixel side.
pub const MAX_SCALE: u32 = 64;

/// The output folder by default: `out/<prompt slug>-seed<seed>`.
pub fn default_out(prompt: &str, seed: u64) -> PathBuf {
    PathBuf::from("out").join(format!("{}-seed{seed}", prompt::slug(prompt)))
}

/// img2img's starting picture (resized to the model's resolution) and strength in [0, 1].
#[derive(Debug, Clone)]
pub struct InitImage {
    pub path: PathBuf,
    pub strength: f64,
}

/// Everything `diffuse generate` needs.
pub struct GenerateOptions {
    pub prompt: String,
    pub negative_prompt: Option<String>,
    pub num_images: usize,
    /// The sampler; its prediction type is replaced by the model's.
    pub sampler: SamplerConfig,
    pub guidance: f64,
    pub seed: u64,
    pub out: PathBuf,
    pub frames: FrameCount,
    pub x0_row: bool,
    /// Nearest-neighbour upscaling of frames and the grid; None picks one so a frame is at
    /// least 256 px wide.
    pub scale: Option<u32>,
    pub fps: f64,
    pub save_tensors: bool,
    pub force: bool,
    /// img2img: start from this picture instead of pure noise.
    pub init_image: Option<InitImage>,
    /// Cross-attention maps of every prompt word at about this many steps (text models).
    pub attention_maps: Option<usize>,
}

/// Steps with attention maps by default.
pub const DEFAULT_ATTENTION_STEPS: usize = 8;

/// What was done, written as `run.json`.
#[derive(Debug, Clone, Serialize)]
pub struct GenerateReport {
    pub command: &'static str,
    pub diffuse_version: &'static str,
    pub prompt: String,
    pub negative_prompt: Option<String>,
    pub condition_ids: Vec<u32>,
    pub num_images: usize,
    pub sampler: SamplerConfig,
    /// The timesteps actually run (img2img skips the first ones).
    pub timesteps: Vec<usize>,
    /// img2img strength.
    pub strength: Option<f64>,
    pub guidance: f64,
    pub seed: u64,
    pub model: String,
    pub model_sha256: String,
    pub model_trained_steps: u64,
    pub frame_count: usize,
    pub scale: u32,
    pub out: PathBuf,
    pub files: Vec<String>,
    pub device: String,
    pub threads: usize,
    pub sampling_ms: f64,
    pub writing_ms: f64,
    pub total_ms: f64,
}

/// The checked inputs of a run: condition ids, the sampler and which states become frames.
struct Plan {
    ids: Vec<u32>,
    neg: Vec<u32>,
    config: SamplerConfig,
    schedule: NoiseSchedule,
    timesteps: Vec<usize>,
    /// img2img: the sampler index it starts at (0 for plain generation).
    start: usize,
    /// img2img: the input picture `[3, H, W]` and the strength.
    init: Option<(Tensor, f64)>,
    /// States kept as frames: state 0 is the noise (or the input picture for img2img).
    keep: Vec<usize>,
    scale: u32,
    /// Sampler step indices whose input gets attention maps.
    map_steps: Vec<usize>,
}

impl Plan {
    /// Checks every option before anything is written; returns the plan and its sampler.
    fn new<'m>(
        model: &'m LoadedModel,
        opts: &GenerateOptions,
    ) -> Result<(Self, Box<dyn Sampler + 'm>)> {
        let unet = &model.meta.unet;
        let ids = prompt::encode(&opts.prompt, unet)?;
        let neg = match &opts.negative_prompt {
            Some(p) => prompt::encode(p, unet)?,
            None => prompt::null_ids(unet),
        };
        check_options(opts)?;
        if opts.attention_maps.is_some() && unet.text.is_none() {
            return Err(Error::Unsupported(format!(
                "--attention-maps needs a text model with cross-attention; {} has prompt slots",
                model.name
            )));
        }
        let config = model.with_prediction(opts.sampler);
        let sampler = model.sampler(config)?;
        let timesteps = sampler.timesteps().to_vec();
        let n = timesteps.len();
        let init = match &opts.init_image {
            Some(init) => Some((load_init(model, &init.path)?, init.strength)),
            None => None,
        };
        // img2img starts part-way: state 0 is the input, state 1 the input noised to the
        // start step; plain generation starts from pure noise (state 0).
        let start = init
            .as_ref()
            .map_or(0, |(_, s)| pipeline::img2img_start(n, *s));
        let total_states = n - start + 1 + usize::from(init.is_some());
        let k = opts.num_images as u32;
        let tile_w = model.meta.unet.image_size as u32 + 1;
        let map_steps = match opts.attention_maps {
            Some(m) => render::evenly_chosen(n - start, m)
                .into_iter()
                .map(|i| i + start)
                .collect(),
            None => Vec::new(),
        };
        let plan = Self {
            map_steps,
            ids,
            neg,
            config,
            schedule: model.schedule.clone(),
            start,
            init,
            keep: opts.frames.pick(total_states),
            scale: opts
                .scale
                .unwrap_or_else(|| (256 / (k * tile_w + 1)).max(1) + 1),
            timesteps,
        };
        Ok((plan, sampler))
    }

    /// img2img's first sampler input: the picture `x_in` `[K, 3, H, W]` noised to the start
    /// timestep (the picture itself when strength 0 leaves no step to run).
    fn noised_input(&self, x_in: &Tensor, rng: &mut Rng) -> Result<Tensor> {
        let noise = rng::randn(rng, x_in.shape().clone(), x_in.device())?;
        if self.start >= self.timesteps.len() {
            return Ok(x_in.clone());
        }
        let k = x_in.dim(0)?;
        self.schedule
            .q_sample(x_in, &vec![self.timesteps[self.start]; k], &noise)
    }

    /// The extra input state of img2img.
    fn offset(&self) -> usize {
        usize::from(self.init.is_some())
    }

    /// A state's label on the strip: "input", "noise", or the timestep it is at: the start
    /// of img2img, then the timestep each step began from.
    fn label(&self, state: usize) -> String {
        let (n, offset) = (self.timesteps.len(), self.offset());
        if self.init.is_some() && state == 0 {
            "input".into()
        } else if state == offset {
            match &self.init {
                Some(_) if self.start < n => format!("t={}", self.timesteps[self.start]),
                Some(_) => "input".into(),
                None => "noise".into(),
            }
        } else {
            format!("t={}", self.timesteps[state - offset - 1 + self.start])
        }
    }
}

fn check_options(opts: &GenerateOptions) -> Result<()> {
    if opts.num_images == 0 || opts.num_images > MAX_NUM_IMAGES {
        let range = format!("1..={MAX_NUM_IMAGES}");
        return Err(Error::out_of_range("num-images", opts.num_images, range));
    }
    if !(opts.guidance.is_finite() && opts.guidance >= 0.0) {
        return Err(Error::option_is(
            "guidance",
            opts.guidance,
            "must be a number ≥ 0",
        ));
    }
    opts.frames.validate()?;
    if let Some(s) = opts.scale.filter(|s| *s == 0 || *s > MAX_SCALE) {
        return Err(Error::out_of_range("scale", s, format!("1..={MAX_SCALE}")));
    }
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

/// img2img's input, resized to the model's resolution, on the model's device.
fn load_init(model: &LoadedModel, path: &std::path::Path) -> Result<Tensor> {
    let side = model.meta.unet.image_size as u32;
    let opts = LoadOptions {
        size: Some(Size {
            width: side,
            height: side,
        }),
        ..LoadOptions::default()
    };
    Ok(load_image(path, &opts, model.device())?.x0)
}

/// Runs `diffuse generate` on the model's device.
pub fn run(
    model: &LoadedModel,
    opts: &GenerateOptions,
    progress: &dyn Progress,
) -> Result<GenerateReport> {
    let began = Instant::now();
    let (plan, mut sampler) = Plan::new(model, opts)?;
    fs::prepare_output_dir(&opts.out, opts.force)?;
    let frames = AnimationWriter::new(
        &opts.out,
        "denoising.gif",
        plan.keep.len(),
        opts.fps,
        opts.force,
    )?;
    let mut rec = Recording {
        frames,
        trajectory: Vec::new(),
        maps: Vec::new(),
    };
    let k = opts.num_images;
    let guided = model.guided(
        opts.guidance,
        &vec![plan.ids.clone(); k],
        &vec![plan.neg.clone(); k],
    )?;
    progress.stage("denoising", (plan.timesteps.len() - plan.start) as u64);
    let t0 = Instant::now();
    let x = sample(&plan, sampler.as_mut(), &guided, opts, &mut rec, progress)?;
    progress.finish();
    let Recording {
        frames,
        trajectory,
        maps,
    } = rec;
    let sampling_ms = ms(t0) - frames.busy_ms();

    let t0 = Instant::now();
    let frames_before = frames.busy_ms();
    let animation = frames.finish()?;
    let mut files = animation.files;
    files.extend(render::save_samples(&x, &opts.out, plan.scale)?);
    if !maps.is_empty() {
        let words = crate::text::tokenizer::words(&opts.prompt);
        let base = render::to_rgb8(&x.get(0)?)?;
        let scale = (256 / base.width()).max(1);
        let written =
            render::attention::save_word_maps(&opts.out, &words, &maps, &base, scale, 2.0)?;
        files.extend(written);
    }
    if opts.save_tensors && !trajectory.is_empty() {
        let (xs, x0s): (Vec<Tensor>, Vec<Tensor>) = trajectory.into_iter().unzip();
        let tensors = vec![
            ("x_t", Tensor::stack(&xs, 0)?),      // [N, K, 3, H, W]
            ("x0_pred", Tensor::stack(&x0s, 0)?), // [N, K, 3, H, W]
        ];
        let path = opts.out.join("trajectory.safetensors");
        safetensors::save_trajectory(&path, tensors, &plan.timesteps[plan.start..])?;
        files.push("trajectory.safetensors".into());
    }
    files.push("run.json".into());
    let report = GenerateReport {
        command: "generate",
        diffuse_version: env!("CARGO_PKG_VERSION"),
        prompt: opts.prompt.clone(),
        negative_prompt: opts.negative_prompt.clone(),
        condition_ids: plan.ids.clone(),
        num_images: k,
        sampler: plan.config,
        timesteps: plan.timesteps[plan.start..].to_vec(),
        strength: plan.init.as_ref().map(|(_, s)| *s),
        guidance: opts.guidance,
        seed: opts.seed,
        model: model.name.clone(),
        model_sha256: model.sha256.clone(),
        model_trained_steps: model.meta.trained_steps,
        frame_count: plan.keep.len(),
        scale: plan.scale,
        out: opts.out.clone(),
        files,
        device: crate::device::device_name(model.device()),
        threads: rayon::current_num_threads(),
        sampling_ms,
        writing_ms: frames_before + ms(t0),
        total_ms: ms(began),
    };
    write_run_json(&opts.out, &report)?;
    Ok(report)
}

/// What a run records besides the final sample.
struct Recording {
    /// The kept states, streamed to disk.
    frames: AnimationWriter,
    /// With `--save-tensors`: every step's x_t and x0 prediction.
    trajectory: Vec<(Tensor, Tensor)>,
    /// With `--attention-maps`: the word maps at the chosen steps.
    maps: Vec<StepMaps>,
}

/// The reverse loop, recording as it goes. Returns the final sample.
fn sample(
    plan: &Plan,
    sampler: &mut dyn Sampler,
    guided: &Guided,
    opts: &GenerateOptions,
    rec: &mut Recording,
    progress: &dyn Progress,
) -> Result<Tensor> {
    let Recording {
        frames,
        trajectory,
        maps,
    } = rec;
    let mut rng = rng::rng(opts.seed);
    let observe = |maps: &mut Vec<StepMaps>, step: usize, x: &Tensor| -> Result<()> {
        if plan.map_steps.contains(&step) {
            maps.push(word_maps(guided, &plan.ids, x, plan.timesteps[step])?);
        }
        Ok(())
    };
    let record = |frames: &mut AnimationWriter, state: usize, x: &Tensor, x0: Option<&Tensor>| {
        if !plan.keep.contains(&state) {
            return Ok(());
        }
        let img = render::state_frame(x, x0, plan.scale, opts.x0_row)?;
        frames.push(img, || plan.label(state))
    };
    let x_start = match &plan.init {
        None => {
            let noise = pipeline::initial_noise(guided, &mut rng)?; // [K, C, H, W]
            record(frames, 0, &noise, None)?;
            noise
        }
        Some((image, _)) => {
            let x_in = image.unsqueeze(0)?.repeat((opts.num_images, 1, 1, 1))?; // [K, 3, H, W]
            record(frames, 0, &x_in, Some(&x_in))?;
            let x_start = plan.noised_input(&x_in, &mut rng)?;
            record(frames, 1, &x_start, None)?;
            x_start
        }
    };
    let (start, offset) = (plan.start, plan.offset());
    if start < plan.timesteps.len() {
        observe(maps, start, &x_start)?;
    }
    let mut failed: Option<Error> = None;
    let x = pipeline::denoise_from(guided, sampler, &mut rng, start, x_start, |e: StepEvent| {
        if failed.is_none() {
            failed = record(frames, e.i + 1 - start + offset, e.x, Some(e.x0))
                .and_then(|()| observe(maps, e.i + 1, e.x))
                .err();
        }
        if opts.save_tensors {
            trajectory.push((e.x.clone(), e.x0.clone()));
        }
        progress.advance(1);
    })?;
    match failed {
        Some(e) => Err(e),
        None => Ok(x),
    }
}

/// The cross-attention maps of image 0 of `x` (the input of the step at timestep `t`) for
/// every word of the prompt `ids`.
fn word_maps(guided: &Guided, ids: &[u32], x: &Tensor, t: usize) -> Result<StepMaps> {
    let unet = guided.model;
    let cond = crate::unet::cond_tensor(&[ids.to_vec()], unet.device())?; // [1, L]
    let maps = unet.word_maps(&x.narrow(0, 0, 1)?, t as f64, &cond)?; // [L, H, W]
    let words = ids.iter().take_while(|&&id| id != 0).count();
    let words = (0..words)
        .map(|w| Ok(maps.get(w)?.flatten_all()?.to_vec1::<f32>()?))
        .collect::<Result<Vec<_>>>()?;
    Ok(StepMaps {
        label: format!("t={t}"),
        words,
    })
}
