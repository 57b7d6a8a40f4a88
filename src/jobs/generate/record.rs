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

/// The labels of a frame's rows, for a pixel or a latent model.
struct RowNames {
    z_t: &'static str,
    x_t: &'static str,
    x0: &'static str,
    eps: &'static str,
}

impl RowNames {
    fn new(latent: bool, input: bool, last: bool) -> Self {
        let x_t = match (input, last, latent) {
            (true, _, _) => "the input picture",
            (false, true, false) => "x_0: the final sample",
            (false, true, true) => "decode(z_0): the final sample",
            (false, false, false) => "x_t: the noisy image",
            (false, false, true) => "decode(z_t): the latent as a picture",
        };
        match latent {
            false => Self {
                z_t: "",
                x_t,
                x0: "x0: the model's guess of the final image",
                eps: "eps: the noise the model predicts (shown at 2 sigma)",
            },
            true => Self {
                z_t: match last {
                    true => "z_0: the sample's 4 latent channels (blue -, red +)",
                    false => "z_t: the 4 latent channels (blue -, red +)",
                },
                x_t,
                x0: "decode(z0): the guess of the final image",
                eps: "eps: the noise predicted in the latent",
            },
        }
    }
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
    let x_img = if input { x.clone() } else { run.decode(x)? };
    let x0 = step.map(|(x0, _)| run.decode(x0)).transpose()?;
    let side = x_img.dim(2)?;
    // A latent model's own state and noise, as 2×2 channel grids at the picture's side.
    let grid = |z: &Tensor| crate::render::latent::channel_grid(z, side);
    let latent = run.is_latent();
    let z_t = (latent && !input).then(|| grid(x)).transpose()?;
    let eps = match step {
        Some((_, eps)) if latent => Some(grid(eps)?),
        Some((_, eps)) => Some(eps.clone()),
        None => None,
    };
    let names = RowNames::new(latent, input, plan.is_final(state));
    let mut rows = Vec::with_capacity(4);
    if latent {
        rows.push(Row {
            name: names.z_t,
            tiles: z_t.as_ref().map_or(Tiles::Blank, Tiles::Images),
        });
    }
    rows.push(Row {
        name: names.x_t,
        tiles: Tiles::Images(&x_img),
    });
    if opts.x0_row {
        rows.push(Row {
            name: names.x0,
            tiles: x0.as_ref().map_or(Tiles::Blank, Tiles::Images),
        });
    }
    if opts.show_noise {
        let tiles = match &eps {
            Some(e) if latent => Tiles::Images(e),
            Some(e) => Tiles::Noise(e),
            None => Tiles::Blank,
        };
        rows.push(Row {
            name: names.eps,
            tiles,
        });
    }
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
