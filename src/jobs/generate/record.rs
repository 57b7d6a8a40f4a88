//! The reverse loop of `generate`, recording as it goes: the kept states stream into the
//! frame writer, every step's tensors into the trajectory (with `--save-tensors`), and the
//! word maps at the chosen steps (with `--attention-maps`).

use candle_core::Tensor;

use super::plan::Plan;
use super::GenerateOptions;
use crate::error::{Error, Result};
use crate::pipeline::{self, Guided, StepEvent};
use crate::progress::Progress;
use crate::render;
use crate::render::animation::AnimationWriter;
use crate::render::attention::StepMaps;
use crate::rng;
use crate::sampler::Sampler;

/// What a run records besides the final sample.
pub(super) struct Recording {
    /// The kept states, streamed to disk.
    pub(super) frames: AnimationWriter,
    /// With `--save-tensors`: every step's x_t and x0 prediction.
    pub(super) trajectory: Vec<(Tensor, Tensor)>,
    /// With `--attention-maps`: the word maps at the chosen steps.
    pub(super) maps: Vec<StepMaps>,
}

/// The reverse loop, recording as it goes. Returns the final sample.
pub(super) fn sample(
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
