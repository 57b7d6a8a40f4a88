//! `diffuse train`: the training loop around [`crate::train::Trainer`], with a CSV log,
//! a loss-curve plot, preview grids, periodic and Ctrl-C checkpoints, and the final model.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::Device;

use crate::error::{Error, Result};
use crate::frames;
use crate::fsutil;
use crate::plot::{self, Panel, Series};
use crate::progress::Progress;
use crate::rng;
use crate::sampler::{self, SamplerConfig, SamplerKind};
use crate::train::{TrainConfig, Trainer};

/// What `diffuse train` was asked to do.
pub struct TrainOptions {
    pub config: TrainConfig,
    /// The model file to write (EMA weights).
    pub out: PathBuf,
    /// Folder for the log, plots, previews and the checkpoint.
    pub run_dir: PathBuf,
    /// Continue from this checkpoint instead of starting afresh.
    pub resume: Option<PathBuf>,
    /// With `resume`: a new total step count.
    pub steps_override: Option<u64>,
    /// Checkpoint, plot and preview every this many steps.
    pub every: u64,
    /// DDPM steps for preview grids.
    pub preview_steps: usize,
    pub force: bool,
    /// Appended to `commands.txt` in the run folder.
    pub command_line: String,
}

/// How a run ended.
pub struct TrainOutcome {
    pub step: u64,
    pub total_steps: u64,
    pub last_loss: f32,
    pub elapsed_s: f64,
    pub interrupted: bool,
    pub checkpoint: PathBuf,
}

const CSV_HEADER: &str = "step,loss,lr,grad_norm,elapsed_s";

/// Reads the CSV log back as (step, loss) points, dropping rows past `keep_until`.
fn read_log(path: &Path, keep_until: u64) -> (Vec<String>, Vec<(f64, f64)>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut rows = Vec::new();
    let mut points = Vec::new();
    for line in text.lines().skip(1) {
        let mut f = line.split(',');
        let (Some(Ok(step)), Some(Ok(loss))) = (
            f.next().map(str::parse::<u64>),
            f.next().map(str::parse::<f64>),
        ) else {
            continue;
        };
        if step <= keep_until {
            rows.push(line.to_string());
            points.push((step as f64, loss));
        }
    }
    (rows, points)
}

/// An exponential moving average of the loss curve, for a readable plot.
fn smooth(points: &[(f64, f64)], alpha: f64) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(points.len());
    let mut acc: Option<f64> = None;
    for &(x, y) in points {
        let v = acc.map_or(y, |a| a * (1.0 - alpha) + y * alpha);
        acc = Some(v);
        out.push((x, v));
    }
    out
}

/// Draws the loss curve (raw and smoothed, log scale) into `path`.
pub fn save_loss_plot(points: &[(f64, f64)], path: &Path) -> Result<()> {
    let log: Vec<(f64, f64)> = points
        .iter()
        .map(|&(x, y)| (x, y.max(1e-8).log10()))
        .collect();
    let panel = Panel {
        title: "training loss (MSE on ε)".into(),
        x_label: "step".into(),
        y_label: "log10 loss".into(),
        series: vec![
            Series {
                name: "per step".into(),
                points: log.clone(),
            },
            Series {
                name: "EMA (0.02)".into(),
                points: smooth(&log, 0.02),
            },
        ],
        log_x: false,
    };
    let img = plot::render(&[panel], 900, 480)?;
    frames::save_png(&img, path)
}

/// Every combination of the vocabulary's words (one image per prompt, at most 64), or 16
/// unconditional samples for a model without prompt slots.
fn preview_prompts(vocab: &crate::unet::Vocabulary) -> Vec<Vec<u32>> {
    let mut prompts: Vec<Vec<u32>> = vec![vec![]];
    for slot in &vocab.slots {
        prompts = prompts
            .into_iter()
            .flat_map(|p| {
                (0..slot.words.len() as u32).map(move |w| {
                    let mut q = p.clone();
                    q.push(w);
                    q
                })
            })
            .take(64)
            .collect();
    }
    if vocab.slots.is_empty() {
        prompts = vec![vec![]; 16];
    }
    prompts
}

/// Samples one image per prompt with the EMA weights and saves the grid. For the shapes
/// vocabulary, also returns the judge's tally of those samples.
pub fn save_preview(
    trainer: &Trainer,
    steps: usize,
    path: &Path,
) -> Result<Option<crate::eval::Tally>> {
    let vocab = &trainer.config.unet.vocab;
    let ids = preview_prompts(vocab);
    let cond = crate::unet::cond_tensor(&ids, &Device::Cpu)?;
    let model = trainer.ema_model()?;
    let config = SamplerConfig {
        prediction: trainer.config.unet.prediction,
        ..SamplerConfig::new(SamplerKind::Ddpm, steps)
    };
    let mut sampler = sampler::build(&config, &trainer.schedule)?;
    let guided = crate::pipeline::Guided {
        model: &model,
        scale: 1.0,
        uncond: cond.clone(),
        cond,
    };
    let x = crate::pipeline::sample(&guided, sampler.as_mut(), &mut rng::rng(0), |_, _| {})?;
    let images = (0..ids.len())
        .map(|i| frames::to_rgb8(&x.get(i)?))
        .collect::<Result<Vec<_>>>()?;
    let refs: Vec<&image::RgbImage> = images.iter().collect();
    let cols = vocab.slots.last().map_or(4, |s| s.words.len().min(8));
    frames::save_png(&frames::grid(&refs, cols, 2, None), path)?;
    if *vocab != crate::unet::Vocabulary::shapes() {
        return Ok(None);
    }
    let mut tally = crate::eval::Tally::default();
    for (img, id) in images.iter().zip(&ids) {
        tally.add(
            &crate::eval::judge(img),
            Some(id[0] as usize),
            Some(id[1] as usize),
        );
    }
    Ok(Some(tally))
}

/// Appends the judge's accuracy on a preview grid to `eval_log.csv`.
fn append_eval_log(path: &Path, step: u64, t: &crate::eval::Tally) -> Result<()> {
    let mut text = std::fs::read_to_string(path).unwrap_or_else(|_| {
        "step,colour_accuracy,shape_accuracy,both_accuracy,no_clear_object\n".into()
    });
    text.push_str(&format!(
        "{step},{:.4},{:.4},{:.4},{}\n",
        t.colour_accuracy(),
        t.shape_accuracy(),
        t.both_accuracy(),
        t.no_clear_object
    ));
    fsutil::write_atomic(path, text.as_bytes())
}

/// Runs (or continues) training until the step count is reached or `stop` is set.
pub fn run(
    opts: &TrainOptions,
    device: &Device,
    progress: &dyn Progress,
    stop: &AtomicBool,
) -> Result<TrainOutcome> {
    if opts.every == 0 {
        return Err(Error::invalid("--checkpoint-every 0: must be at least 1"));
    }
    let mut trainer = match &opts.resume {
        Some(ckpt) => Trainer::resume(ckpt, opts.steps_override, device)?,
        None => {
            opts.config.validate()?;
            fsutil::check_overwrite(&opts.out, opts.force)?;
            Trainer::new(opts.config.clone(), device)?
        }
    };
    if let Some(ds) = &trainer.folder {
        if let Some(first) = ds.skipped.first() {
            progress.note(&format!(
                "skipped {} unreadable file(s) in {} (first: {})",
                ds.skipped.len(),
                ds.root.display(),
                first.display()
            ));
        }
    }
    fsutil::create_dir(&opts.run_dir)?;
    if let Some(parent) = opts.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        fsutil::create_dir(parent)?;
    }
    let history = opts.run_dir.join("commands.txt");
    let mut text = std::fs::read_to_string(&history).unwrap_or_default();
    text.push_str(&opts.command_line);
    text.push('\n');
    fsutil::write_atomic(&history, text.as_bytes())?;
    let ckpt_path = opts.run_dir.join("checkpoint.safetensors");
    let log_path = opts.run_dir.join("train_log.csv");
    let (rows, mut points) = read_log(&log_path, trainer.step);
    let mut log_text = format!("{CSV_HEADER}\n");
    for r in rows {
        log_text.push_str(&r);
        log_text.push('\n');
    }
    fsutil::write_atomic(&log_path, log_text.as_bytes())?;
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(&log_path)
        .map_err(|e| Error::Write {
            path: log_path.clone(),
            reason: e,
        })?;

    let total = trainer.config.steps;
    let start = Instant::now();
    let elapsed = |t: &Trainer| t.elapsed_before_s + start.elapsed().as_secs_f64();
    progress.stage("training", total);
    progress.advance(trainer.step);
    let mut loss_ema: Option<f64> = None;
    let mut last_loss = f32::NAN;
    let mut interrupted = false;
    let checkpoint = |t: &Trainer, points: &[(f64, f64)]| -> Result<()> {
        t.save_checkpoint(&ckpt_path, elapsed(t))?;
        t.save_model(&opts.out)?;
        save_loss_plot(points, &opts.run_dir.join("loss.png"))
    };
    while trainer.step < total {
        if stop.load(Ordering::SeqCst) {
            interrupted = true;
            break;
        }
        let s = trainer.train_step()?;
        last_loss = s.loss;
        let l = s.loss as f64;
        let ema = loss_ema.map_or(l, |e| 0.98 * e + 0.02 * l);
        loss_ema = Some(ema);
        writeln!(
            log,
            "{},{},{:.6e},{:.4},{:.2}",
            s.step,
            s.loss,
            s.lr,
            s.grad_norm,
            elapsed(&trainer)
        )
        .map_err(|e| Error::Write {
            path: log_path.clone(),
            reason: e,
        })?;
        points.push((s.step as f64, l));
        progress.advance(1);
        progress.status(&format!("loss {ema:.4}"));
        if s.step % opts.every == 0 || s.step == total {
            checkpoint(&trainer, &points)?;
            let preview = opts.run_dir.join(format!("preview_{:06}.png", s.step));
            if let Some(tally) = save_preview(&trainer, opts.preview_steps, &preview)? {
                append_eval_log(&opts.run_dir.join("eval_log.csv"), s.step, &tally)?;
            }
        }
    }
    if interrupted {
        checkpoint(&trainer, &points)?;
    }
    progress.finish();
    Ok(TrainOutcome {
        step: trainer.step,
        total_steps: total,
        last_loss,
        elapsed_s: elapsed(&trainer),
        interrupted,
        checkpoint: ckpt_path,
    })
}

/// `diffuse data shapes`: writes `count` images named `{index}_{colour}_{shape}.png` and a
/// preview grid of the first 64.
pub fn write_shapes(
    seed: u64,
    count: usize,
    out: &Path,
    force: bool,
    progress: &dyn Progress,
) -> Result<usize> {
    if count == 0 {
        return Err(Error::invalid("--count 0: write at least one image"));
    }
    fsutil::prepare_output_dir(out, force)?;
    progress.stage("drawing shapes", count as u64);
    let items = crate::data::shapes::render_range(seed, 0, count);
    use rayon::prelude::*;
    items
        .par_iter()
        .enumerate()
        .try_for_each(|(i, (spec, img))| {
            let (c, s) = spec.label();
            frames::save_png(img, &out.join(format!("{i:06}_{c}_{s}.png")))?;
            progress.advance(1);
            Ok::<_, Error>(())
        })?;
    progress.finish();
    let refs: Vec<&image::RgbImage> = items.iter().take(64).map(|(_, i)| i).collect();
    frames::save_png(&frames::grid(&refs, 8, 2, None), &out.join("preview.png"))?;
    Ok(count)
}
