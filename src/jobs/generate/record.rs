//! The reverse loop of `generate`, recording as it goes: the kept states stream into the
//! frame writer, every step's tensors into the trajectory (with `--save-tensors`), and the
//! word maps at the chosen steps (with `--attention-maps`).

use candle_core::Tensor;

use super::plan::Plan;
use super::GenerateOptions;
use crate::edit::inpaint::{replace_start, InpaintMethod, Known, RePaint, Replace};
use crate::error::{Error, Result};
use crate::pipeline::{self, Guided, StepEvent};
use crate::progress::Progress;
use crate::render::animation::AnimationWriter;
use crate::render::attention::StepMaps;
use crate::render::frame::{labelled_frame, Row, Tiles};
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
    let outline = plan.inpaint.as_ref().map(|i| i.repaint.as_slice());
    let side = guided.model.sample_shape().1;
    let layout = (opts.num_images, side, plan.scale);
    let record = |frames: &mut AnimationWriter,
                  state: usize,
                  x: &Tensor,
                  step: Option<(&Tensor, &Tensor)>| {
        if !plan.keep.contains(&state) {
            return Ok(());
        }
        let input = plan.offset() == 1 && state == 0;
        let mut rows = vec![Row {
            name: if input {
                "the input picture"
            } else {
                "x_t: the noisy image"
            },
            tiles: Tiles::Images(x),
        }];
        if opts.x0_row {
            rows.push(Row {
                name: "x0: the model's guess of the final image",
                tiles: step.map_or(Tiles::Blank, |(x0, _)| Tiles::Images(x0)),
            });
        }
        if opts.show_noise {
            rows.push(Row {
                name: "eps: the noise the model predicts (shown at 2 sigma)",
                tiles: step.map_or(Tiles::Blank, |(_, eps)| Tiles::Noise(eps)),
            });
        }
        let img = labelled_frame(&plan.title(state), &rows, layout, outline)?;
        frames.push(img, || plan.label(state))
    };
    let (k, start, offset) = (opts.num_images, plan.start, plan.offset());
    let input = match (&plan.init, &plan.inpaint) {
        (Some((image, _)), _) => Some(image.unsqueeze(0)?.repeat((k, 1, 1, 1))?),
        (None, Some(inpaint)) => Some(inpaint.known.image.repeat((k, 1, 1, 1))?),
        (None, None) => None,
    }; // [K, 3, H, W]
    if let Some(x_in) = &input {
        record(frames, 0, x_in, None)?;
    }
    let noise = match (&plan.init, &plan.from_noise, &input) {
        (Some(_), _, Some(x_in)) => plan.noised_input(x_in, &mut rng)?,
        (None, Some(noise), _) => noise.clone(),
        _ => pipeline::initial_noise(guided, &mut rng)?, // [K, C, H, W]
    };
    let method = plan.inpaint.as_ref().map(|i| i.method);
    let known = match (&plan.inpaint, input) {
        (Some(inpaint), Some(image)) => Some(Known {
            image,
            keep: inpaint.known.keep.clone(),
        }),
        _ => None,
    };
    // The replace method noises the kept region with one ε, drawn after the starting noise.
    let (x_start, eps) = match (&known, method) {
        (Some(known), Some(InpaintMethod::Replace)) => {
            let eps = rng::randn(&mut rng, noise.shape().clone(), noise.device())?;
            let t0 = plan.timesteps[0];
            (
                replace_start(&plan.schedule, known, t0, &eps, &noise)?,
                Some(eps),
            )
        }
        _ => (noise, None),
    };
    record(frames, offset, &x_start, None)?;
    if start < plan.timesteps.len() {
        observe(maps, start, &x_start)?;
    }
    let mut failed: Option<Error> = None;
    let on_step = |e: StepEvent| {
        if failed.is_none() {
            failed = record(
                frames,
                e.i + 1 - start + offset,
                e.x,
                Some((e.x0, e.model_output)),
            )
            .and_then(|()| observe(maps, e.i + 1, e.x))
            .err();
        }
        if opts.save_tensors {
            trajectory.push((e.x.clone(), e.x0.clone()));
        }
        progress.advance(1);
    };
    let (schedule, config) = (&plan.schedule, &plan.config);
    let x = match (known, eps) {
        (Some(known), Some(eps)) => {
            let mut replace = Replace::new(sampler, schedule, &known, eps);
            pipeline::denoise_from(guided, &mut replace, &mut rng, 0, x_start, on_step)?
        }
        (Some(known), None) => {
            let (shape, device) = (x_start.shape().clone(), x_start.device().clone());
            let repaint = RePaint {
                schedule,
                config: *config,
                timesteps: &plan.timesteps,
            };
            let draw = || rng::randn(&mut rng, shape.clone(), &device);
            repaint.run(|x, t| guided.predict(x, t), &known, x_start, draw, on_step)?
        }
        (None, _) => pipeline::denoise_from(guided, sampler, &mut rng, start, x_start, on_step)?,
    };
    match failed {
        Some(e) => Err(e),
        None => Ok(x),
    }
}

/// The cross-attention maps of image 0 of `x` (the input of the step at timestep `t`) for
/// every word of the prompt `ids`.
fn word_maps(guided: &Guided, ids: &[u32], x: &Tensor, t: usize) -> Result<StepMaps> {
    let unet = guided.model.text_unet().ok_or_else(|| {
        crate::Error::Unsupported("attention maps need a text model with cross-attention".into())
    })?;
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
