//! The reverse loop of `generate`, recording as it goes: the kept states stream into the
//! frame writer, every step's tensors into the trajectory (with `--save-tensors`), and the
//! word maps at the chosen steps (with `--attention-maps`).

use candle_core::Tensor;

use super::plan::Plan;
use super::GenerateOptions;
use crate::error::Result;
use crate::progress::Progress;
use crate::render::animation::AnimationWriter;
use crate::render::attention::StepMaps;
use crate::render::frame::{labelled_frame, Row, Tiles};
use crate::run::Run;

/// What a run records besides the final sample.
pub(super) struct Recording {
    /// The kept states, streamed to disk.
    pub(super) frames: AnimationWriter,
    /// With `--save-tensors`: every step's x_t and x0 prediction.
    pub(super) trajectory: Vec<(Tensor, Tensor)>,
    /// With `--attention-maps`: the word maps at the chosen steps.
    pub(super) maps: Vec<StepMaps>,
}

/// One kept state as a frame: x_t (or the input picture), and the x0 guess and predicted
/// noise of the step that made it (blank before the first step).
fn record(
    plan: &Plan,
    opts: &GenerateOptions,
    run: &Run,
    frames: &mut AnimationWriter,
    state: usize,
    x: &Tensor,
    step: Option<(&Tensor, &Tensor)>,
) -> Result<()> {
    if !plan.keep.contains(&state) {
        return Ok(());
    }
    let input = plan.offset() == 1 && state == 0;
    let x = if input { x.clone() } else { run.decode(x)? };
    let mut rows = vec![Row {
        name: if input {
            "the input picture"
        } else {
            "x_t: the noisy image"
        },
        tiles: Tiles::Images(&x),
    }];
    let x0 = step.map(|(x0, _)| run.decode(x0)).transpose()?;
    if opts.x0_row {
        rows.push(Row {
            name: "x0: the model's guess of the final image",
            tiles: x0.as_ref().map_or(Tiles::Blank, Tiles::Images),
        });
    }
    if opts.show_noise {
        rows.push(Row {
            name: "eps: the noise the model predicts (shown at 2 sigma)",
            tiles: step.map_or(Tiles::Blank, |(_, eps)| Tiles::Noise(eps)),
        });
    }
    let side = x.dim(2)?;
    let layout = (opts.num_images, side, plan.scale);
    let outline = plan.inpaint.as_ref().map(|i| i.repaint.as_slice());
    let img = labelled_frame(&plan.title(state), &rows, layout, outline)?;
    frames.push(img, || plan.label(state))
}

/// The reverse loop, recording as it goes. Returns the final sample.
pub(super) fn sample(
    plan: &Plan,
    mut run: Run,
    opts: &GenerateOptions,
    rec: &mut Recording,
    progress: &dyn Progress,
) -> Result<Tensor> {
    let offset = plan.offset();
    if let Some(x_in) = plan.input_pictures(opts.num_images)? {
        record(plan, opts, &run, &mut rec.frames, 0, &x_in, None)?;
    }
    let first = run.state(0).clone();
    record(plan, opts, &run, &mut rec.frames, offset, &first, None)?;
    while let Some(out) = run.step()? {
        rec.maps.extend(out.attention);
        let Some(s) = &out.columns[0] else { break };
        let state = out.i + 1 - plan.start + offset;
        let step = Some((&s.x0, &s.model_output));
        record(plan, opts, &run, &mut rec.frames, state, &s.x, step)?;
        if opts.save_tensors {
            rec.trajectory.push((s.x.clone(), s.x0.clone()));
        }
        progress.advance(1);
    }
    let sample = run.finish()?.remove(0); // [K, 3, S, S]
    match plan.inpaint.as_ref().and_then(|i| i.pixels.as_ref()) {
        // A latent model: the kept pixels are the input's, pasted over the decoded output.
        Some(px) => {
            let picture = px.image.repeat((sample.dim(0)?, 1, 1, 1))?;
            crate::edit::inpaint::blend(&picture, &sample, &px.keep)
        }
        None => Ok(sample),
    }
}
