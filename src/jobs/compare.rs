//! `diffuse compare`: one prompt, one starting noise, several values of one setting
//! (guidance, sampler, steps or seed), drawn as one picture with a labelled row per value:
//! each row shows the run's states from noise to the final image.

use std::path::PathBuf;

use image::RgbImage;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::io::fs;
use crate::model::LoadedModel;
use crate::progress::Progress;
use crate::render::{self, frame::default_scale};
use crate::run::{Column, ColumnStep, Run, RunRequest, Start};
use crate::sampler::SamplerConfig;

/// The most rows.
pub use crate::run::MAX_VALUES;
/// States per row by default, and at most.
pub const DEFAULT_FRAMES: usize = 6;
pub const MAX_FRAMES: usize = 16;

pub use crate::run::Axis;

/// Everything `diffuse compare` needs; the axis's values replace the base setting per row.
pub struct CompareOptions {
    pub prompt: String,
    pub axis: Axis,
    pub sampler: SamplerConfig,
    pub guidance: f64,
    pub seed: u64,
    pub frames: usize,
    pub scale: Option<u32>,
    pub out: PathBuf,
    pub force: bool,
}

/// What was done.
#[derive(Debug, Clone, Serialize)]
pub struct CompareReport {
    pub command: &'static str,
    pub prompt: String,
    pub axis: Axis,
    pub rows: Vec<String>,
    /// Each row's sampler, guidance and seed, as the run took them.
    pub columns: Vec<Column>,
    pub seed: u64,
    #[serde(serialize_with = "crate::jobs::lossy::path")]
    pub out: PathBuf,
    pub model: String,
}

fn check(opts: &CompareOptions) -> Result<()> {
    opts.axis.check(MAX_VALUES)?;
    if !(2..=MAX_FRAMES).contains(&opts.frames) {
        return Err(Error::out_of_range(
            "frames",
            opts.frames,
            format!("2..={MAX_FRAMES}"),
        ));
    }
    crate::render::frame::check_scale(opts.scale)?;
    let png = opts
        .out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if !png {
        let name = opts.out.display().to_string();
        return Err(Error::option_is(
            "out",
            name,
            "compare writes a PNG: name it .png",
        ));
    }
    Ok(())
}

/// One row being drawn: the column's kept states (noise first, the final image last), each
/// labelled with its timestep.
struct RowStates {
    keep: Vec<usize>,
    n: usize,
    states: Vec<(RgbImage, String)>,
}

impl RowStates {
    fn new(run: &Run, c: usize, frames: usize) -> Result<Self> {
        let timesteps = run.timesteps(c);
        let n = timesteps.len();
        let noise = run.decode(run.state(c))?; // [1, 3, H, W]
        Ok(Self {
            keep: render::evenly_chosen(n + 1, frames),
            n,
            states: vec![(
                render::to_rgb8(&noise.get(0)?)?,
                format!("noise t={}", timesteps[0]),
            )],
        })
    }

    fn push(&mut self, run: &Run, i: usize, step: &ColumnStep) -> Result<()> {
        if !self.keep.contains(&(i + 1)) {
            return Ok(());
        }
        let label = match i + 1 == self.n {
            true => "final".to_string(),
            false => format!("t={}", step.t),
        };
        let x = run.decode(&step.x)?;
        self.states.push((render::to_rgb8(&x.get(0)?)?, label));
        Ok(())
    }

    fn picture(self, scale: u32) -> RgbImage {
        let big: Vec<RgbImage> = self
            .states
            .iter()
            .map(|(i, _)| render::upscale(i, scale))
            .collect();
        let refs: Vec<&RgbImage> = big.iter().collect();
        let labels: Vec<String> = self.states.into_iter().map(|(_, l)| l).collect();
        render::grid(&refs, refs.len(), 2, Some(&labels))
    }
}

/// Runs `diffuse compare` on the model's device and writes the picture.
pub fn run(
    model: &LoadedModel,
    opts: &CompareOptions,
    progress: &dyn Progress,
) -> Result<CompareReport> {
    check(opts)?;
    let request = RunRequest {
        prompt: opts.prompt.clone(),
        negative_prompt: None,
        sampler: opts.sampler,
        guidance: opts.guidance,
        seed: opts.seed,
        num_images: 1,
        axis: Some(opts.axis.clone()),
        start_step: 0,
        attention_steps: Vec::new(),
    };
    let mut run = Run::new(model, &request, &Start::Noise)?;
    fs::check_overwrite(&opts.out, opts.force)?;
    let scale = opts
        .scale
        .unwrap_or_else(|| default_scale(model.picture_size()).min(4));
    let columns: Vec<Column> = run.settings().into_iter().cloned().collect();
    let labels: Vec<String> = columns.iter().map(|s| s.to_string()).collect();
    let mut rows = (0..labels.len())
        .map(|c| RowStates::new(&run, c, opts.frames))
        .collect::<Result<Vec<_>>>()?;
    progress.stage("sampling", run.steps() as u64);
    while let Some(out) = run.step()? {
        for (row, step) in rows.iter_mut().zip(&out.columns) {
            if let Some(step) = step {
                row.push(&run, out.i, step)?;
            }
        }
        progress.advance(1);
    }
    run.finish()?;
    progress.finish();
    let rows: Vec<(String, RgbImage)> = labels
        .iter()
        .cloned()
        .zip(rows.into_iter().map(|r| r.picture(scale)))
        .collect();
    let title = format!(
        "\"{}\", seed {}: one row per {}",
        opts.prompt,
        opts.seed,
        opts.axis.flag()
    );
    render::save_png(&render::labelled_rows(&title, &rows), &opts.out)?;
    Ok(CompareReport {
        command: "compare",
        prompt: opts.prompt.clone(),
        axis: opts.axis.clone(),
        rows: labels,
        columns,
        seed: opts.seed,
        out: opts.out.clone(),
        model: model.name.clone(),
    })
}
