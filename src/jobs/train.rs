//! `diffuse train`: the training loop around [`crate::train::Trainer`], with a CSV log,
//! a loss-curve plot, preview grids, periodic and Ctrl-C checkpoints, and the final model.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::Device;

use crate::error::{Error, Result};
use crate::io::fs;
use crate::jobs::train_preview::append_eval_log;
pub use crate::jobs::train_preview::{preview_samples, save_preview, PreviewScore};
use crate::progress::Progress;
use crate::render;
use crate::render::plot::{self, Panel, Series};
use crate::train::{RunOverrides, StepStats, TrainConfig, TrainRun, Trainer};

/// The run folder of a model file by default: `runs/<file stem>`.
pub fn default_run_dir(out: &Path) -> PathBuf {
    let stem = out
        .file_stem()
        .map_or("run".into(), |s| s.to_string_lossy().into_owned());
    PathBuf::from("runs").join(stem)
}

/// The run folder of a run: `run_dir` when given; else, continuing from a checkpoint, the
/// checkpoint's own folder, so a resumed run stays in its run; else `runs/<file stem>`.
pub fn run_dir_for(out: &Path, run_dir: Option<&Path>, resume: Option<&Path>) -> PathBuf {
    match (run_dir, resume) {
        (Some(d), _) => d.to_path_buf(),
        (None, Some(ckpt)) => ckpt
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
        (None, None) => default_run_dir(out),
    }
}

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
    /// With `resume`: new checkpoint and preview settings (a new run takes them from
    /// `config`).
    pub overrides: RunOverrides,
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

/// Where a training run writes: the model file, the run folder, and what its loss plot and
/// log call the loss and its terms.
pub struct RunFiles<'a> {
    pub out: &'a Path,
    pub run_dir: &'a Path,
    pub loss_name: &'static str,
    /// Columns of the loss's terms in `train_log.csv`, after the fixed ones.
    pub parts: &'static [&'static str],
    /// Appended to `commands.txt` in the run folder.
    pub command_line: &'a str,
}

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
pub fn save_loss_plot(points: &[(f64, f64)], name: &str, path: &Path) -> Result<()> {
    let log: Vec<(f64, f64)> = points
        .iter()
        .map(|&(x, y)| (x, y.max(1e-8).log10()))
        .collect();
    let panel = Panel {
        title: format!("training loss ({name})"),
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
    render::save_png(&img, path)
}

/// A fresh trainer, or the one a checkpoint continues; notes skipped data files.
fn open_trainer(opts: &TrainOptions, device: &Device, progress: &dyn Progress) -> Result<Trainer> {
    let trainer = match &opts.resume {
        Some(ckpt) => Trainer::resume(ckpt, opts.steps_override, opts.overrides, device)?,
        None => {
            opts.config.validate()?;
            fs::check_overwrite(&opts.out, opts.force)?;
            Trainer::new(opts.config.clone(), device)?
        }
    };
    if let Some(ds) = &trainer.folder {
        if let Some(first) = ds.skipped.first() {
            progress.note(&format!(
                "skipped {} in {} (first: {})",
                crate::jobs::count(ds.skipped.len() as u64, "unreadable file"),
                ds.root.display(),
                first.display()
            ));
        }
    }
    Ok(trainer)
}

/// The run folder's `train_log.csv`, cut back to the trainer's step (a resumed run replays
/// nothing twice), open for appending, and its (step, loss) points for the plot.
struct RunLog {
    path: PathBuf,
    file: std::fs::File,
    points: Vec<(f64, f64)>,
}

impl RunLog {
    fn open(run_dir: &Path, step: u64, parts: &[&str]) -> Result<Self> {
        let path = run_dir.join("train_log.csv");
        let (rows, points) = read_log(&path, step);
        let mut text = CSV_HEADER.to_string();
        for p in parts {
            text.push(',');
            text.push_str(p);
        }
        text.push('\n');
        for r in rows {
            text.push_str(&r);
            text.push('\n');
        }
        fs::write_atomic(&path, text.as_bytes())?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|reason| Error::Write {
                path: path.clone(),
                reason,
            })?;
        Ok(Self { path, file, points })
    }

    fn append(&mut self, s: &StepStats, elapsed_s: f64) -> Result<()> {
        let mut line = format!(
            "{},{},{:.6e},{:.4},{:.2}",
            s.step, s.loss, s.lr, s.grad_norm, elapsed_s
        );
        for (_, v) in &s.parts {
            line.push_str(&format!(",{v}"));
        }
        writeln!(self.file, "{line}").map_err(|reason| Error::Write {
            path: self.path.clone(),
            reason,
        })?;
        self.points.push((s.step as f64, s.loss as f64));
        Ok(())
    }
}

/// Appends this invocation to the run folder's `commands.txt`.
fn record_command(files: &RunFiles) -> Result<()> {
    fs::create_dir(files.run_dir)?;
    if let Some(parent) = files.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir(parent)?;
    }
    let history = files.run_dir.join("commands.txt");
    let mut text = std::fs::read_to_string(&history).unwrap_or_default();
    text.push_str(files.command_line);
    text.push('\n');
    fs::write_atomic(&history, text.as_bytes())
}

/// Runs (or continues) training until the step count is reached or `stop` is set.
pub fn run(
    opts: &TrainOptions,
    device: &Device,
    progress: &dyn Progress,
    stop: &AtomicBool,
) -> Result<TrainOutcome> {
    let mut trainer = open_trainer(opts, device, progress)?;
    let files = RunFiles {
        out: &opts.out,
        run_dir: &opts.run_dir,
        loss_name: "MSE on ε",
        parts: &[],
        command_line: &opts.command_line,
    };
    drive(&mut trainer, &files, progress, stop, |t: &Trainer, step| {
        let preview = opts.run_dir.join(format!("preview_{step:06}.png"));
        if let Some(score) = save_preview(t, t.config.preview_steps, &preview)? {
            append_eval_log(&opts.run_dir.join("eval_log.csv"), step, &score)?;
        }
        Ok(())
    })
}

/// The training loop of any [`TrainRun`]: a step, the log, progress; a checkpoint, the model
/// file, the loss plot and `after_checkpoint` every `checkpoint_every` steps and at the end;
/// a checkpoint when `stop` is set.
pub fn drive<T: TrainRun>(
    trainer: &mut T,
    files: &RunFiles,
    progress: &dyn Progress,
    stop: &AtomicBool,
    mut after_checkpoint: impl FnMut(&T, u64) -> Result<()>,
) -> Result<TrainOutcome> {
    record_command(files)?;
    let ckpt_path = files.run_dir.join("checkpoint.safetensors");
    let mut log = RunLog::open(files.run_dir, trainer.step(), files.parts)?;
    let total = trainer.total_steps();
    let start = Instant::now();
    let elapsed = |t: &T| t.elapsed_before_s() + start.elapsed().as_secs_f64();
    let checkpoint = |t: &T, points: &[(f64, f64)]| -> Result<()> {
        t.save_checkpoint(&ckpt_path, elapsed(t))?;
        t.save_model(files.out)?;
        save_loss_plot(points, files.loss_name, &files.run_dir.join("loss.png"))
    };
    progress.stage("training", total);
    progress.advance(trainer.step());
    let (mut loss_ema, mut last_loss, mut interrupted) = (None::<f64>, f32::NAN, false);
    while trainer.step() < total {
        if stop.load(Ordering::SeqCst) {
            interrupted = true;
            break;
        }
        let s = trainer.train_step()?;
        last_loss = s.loss;
        let ema = loss_ema.map_or(s.loss as f64, |e| 0.98 * e + 0.02 * s.loss as f64);
        loss_ema = Some(ema);
        log.append(&s, elapsed(trainer))?;
        progress.advance(1);
        progress.status(&format!("loss {ema:.4}"));
        if s.step % trainer.checkpoint_every() == 0 || s.step == total {
            checkpoint(trainer, &log.points)?;
            after_checkpoint(trainer, s.step)?;
        }
    }
    if interrupted {
        checkpoint(trainer, &log.points)?;
    }
    progress.finish();
    Ok(TrainOutcome {
        step: trainer.step(),
        total_steps: total,
        last_loss,
        elapsed_s: elapsed(trainer),
        interrupted,
        checkpoint: ckpt_path,
    })
}
