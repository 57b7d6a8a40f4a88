//! `diffuse train-autoencoder` and `diffuse autoencode`: the autoencoder's training loop (the
//! shared loop of `jobs::train`, with `recon.png` at every checkpoint), a picture through the
//! autoencoder as a teaching picture (picture → its 4 latent channels → reconstruction), and
//! the measurement on unseen scenes: PSNR, and how many objects the emoji judge reads in the
//! reconstructions against the scenes themselves.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use candle_core::{Device, Tensor};
use image::RgbImage;
use serde::Serialize;

use crate::data::emoji;
use crate::edit::invert::psnr;
use crate::error::{Error, Result};
use crate::io::fs;
use crate::jobs::eval_emoji::Counts;
use crate::jobs::train::{drive, RunFiles, TrainOutcome};
use crate::judge::emoji::read;
use crate::progress::Progress;
use crate::render;
use crate::vae::train::{scenes, AutoencoderTrainConfig, AutoencoderTrainer};
use crate::vae::AutoencoderKL;

/// The data seed of the unseen scenes the autoencoder is measured on (it trains on another).
pub const TEST_DATA_SEED: u64 = 99;
/// The most scenes one measurement takes.
pub const MAX_EVAL_SCENES: usize = 100_000;

/// What `diffuse train-autoencoder` was asked to do.
pub struct AutoencoderTrainOptions {
    pub config: AutoencoderTrainConfig,
    pub out: PathBuf,
    pub run_dir: PathBuf,
    pub resume: Option<PathBuf>,
    /// With `resume`: a new total step count.
    pub steps_override: Option<u64>,
    pub force: bool,
    pub command_line: String,
}

/// Trains (or continues) the autoencoder until its step count or `stop`.
pub fn train(
    opts: &AutoencoderTrainOptions,
    device: &Device,
    progress: &dyn Progress,
    stop: &AtomicBool,
) -> Result<TrainOutcome> {
    let mut trainer = match &opts.resume {
        Some(ckpt) => AutoencoderTrainer::resume(ckpt, opts.steps_override, device)?,
        None => {
            opts.config.validate()?;
            fs::check_overwrite(&opts.out, opts.force)?;
            AutoencoderTrainer::new(opts.config.clone(), device)?
        }
    };
    let files = RunFiles {
        out: &opts.out,
        run_dir: &opts.run_dir,
        loss_name: "L1 + edge + KL",
        parts: &["l1", "edge", "kl"],
        command_line: &opts.command_line,
    };
    let recon = opts.run_dir.join("recon.png");
    drive(&mut trainer, &files, progress, stop, |t, _| {
        let x = scenes(TEST_DATA_SEED, 0, 8, device)?; // [8, 3, 64, 64]
        let ae = t.ema_model()?;
        let back = crate::nn::in_pool(|| ae.decode(&ae.encode(&x)?.mean))?;
        save_pairs(&x, &back, &recon)
    })
}

/// Scenes over their reconstructions, one column per scene.
fn save_pairs(x: &Tensor, back: &Tensor, path: &Path) -> Result<()> {
    let mut imgs = pictures(x)?;
    imgs.extend(pictures(&back.clamp(-1f32, 1f32)?)?);
    let big: Vec<RgbImage> = imgs.iter().map(|i| render::upscale(i, 2)).collect();
    let refs: Vec<&RgbImage> = big.iter().collect();
    render::save_png(&render::grid(&refs, x.dim(0)?, 2, None), path)
}

fn pictures(x: &Tensor) -> Result<Vec<RgbImage>> {
    (0..x.dim(0)?)
        .map(|i| render::to_rgb8(&x.get(i)?))
        .collect()
}

/// How well the autoencoder keeps unseen scenes.
#[derive(Debug, Clone, Serialize)]
pub struct AutoencoderEval {
    pub scenes: usize,
    pub data_seed: u64,
    pub psnr_db: f64,
    /// The judge's object reads on the scenes and on their reconstructions.
    pub objects_scenes: f64,
    pub objects_reconstructions: f64,
    /// Reconstruction objects found over scene objects found.
    pub objects_kept: f64,
    pub scaling_factor: f64,
    pub seconds: f64,
}

/// Encodes and decodes `n` unseen scenes (seed [`TEST_DATA_SEED`]) in chunks, and judges
/// the scenes and the reconstructions.
pub fn evaluate(ae: &AutoencoderKL, n: usize, progress: &dyn Progress) -> Result<AutoencoderEval> {
    if !(1..=MAX_EVAL_SCENES).contains(&n) {
        let range = format!("1..={MAX_EVAL_SCENES}");
        return Err(Error::out_of_range("eval", n, range));
    }
    let began = std::time::Instant::now();
    let device = ae.device();
    let (mut orig, mut rec) = (Counts::default(), Counts::default());
    let (mut sq, mut count) = (0f64, 0usize);
    progress.stage("reconstructing", n as u64);
    for start in (0..n).step_by(64) {
        let k = 64.min(n - start);
        let found = emoji::render_range(TEST_DATA_SEED, start as u64, k);
        let x = scenes(TEST_DATA_SEED, start as u64, k, device)?; // [k, 3, 64, 64]
        let back = crate::nn::in_pool(|| ae.decode(&ae.encode(&x)?.mean))?.clamp(-1f32, 1f32)?;
        let mse = (&back - &x)?.sqr()?.mean_all()?.to_scalar::<f32>()? as f64;
        sq += mse * k as f64;
        count += k;
        for ((scene, img), r) in found.iter().zip(pictures(&back)?) {
            let nouns: Vec<usize> = scene.objects.iter().map(|o| o.noun).collect();
            orig.add(&read(img, &nouns, scene.relation));
            rec.add(&read(&r, &nouns, scene.relation));
        }
        progress.advance(k as u64);
    }
    progress.finish();
    Ok(AutoencoderEval {
        scenes: n,
        data_seed: TEST_DATA_SEED,
        psnr_db: 10.0 * (4.0 / (sq / count as f64).max(1e-12)).log10(),
        objects_scenes: orig.object_accuracy(),
        objects_reconstructions: rec.object_accuracy(),
        objects_kept: rec.objects_found as f64 / orig.objects_found.max(1) as f64,
        scaling_factor: ae.config.scaling_factor,
        seconds: began.elapsed().as_secs_f64(),
    })
}

/// What `diffuse autoencode --image` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct AutoencodeReport {
    pub image: String,
    pub out: String,
    pub psnr_db: f64,
    pub latent_shape: Vec<usize>,
    pub latent_std: f64,
}

/// A latent channel `[h, w]` (scaled to unit variance) as a grey picture at ±2σ.
fn channel_picture(z: &Tensor) -> Result<RgbImage> {
    let g = (z.affine(0.5, 0.0)?.clamp(-1f32, 1f32)?).unsqueeze(0)?; // [1, h, w]
    render::to_rgb8(&Tensor::cat(&[&g, &g, &g], 0)?)
}

/// The picture at `path` (resized to the autoencoder's side), its 4 latent channels and its
/// reconstruction, side by side and labelled, written to `out`.
pub fn autoencode(
    ae: &AutoencoderKL,
    path: &Path,
    out: &Path,
    force: bool,
) -> Result<AutoencodeReport> {
    use crate::io::image::{load_image, LoadOptions, Size};
    fs::check_overwrite(out, force)?;
    let side = ae.config.sample_size as u32;
    let size = Some(Size {
        width: side,
        height: side,
    });
    let opts = LoadOptions {
        size,
        ..LoadOptions::default()
    };
    let x = load_image(path, &opts, ae.device())?.x0.unsqueeze(0)?; // [1, 3, S, S]
    let z = crate::nn::in_pool(|| ae.to_latents(&x))?; // [1, 4, h, w], unit variance
    let back = ae.from_latents(&z)?.clamp(-1f32, 1f32)?; // [1, 3, S, S]
    let scale = (256 / side).max(1);
    let latent_scale = scale * ae.config.factor() as u32 / 2;
    let mut tiles = Vec::new();
    for c in 0..z.dim(1)? {
        let img = channel_picture(&z.get(0)?.get(c)?)?;
        tiles.push(render::upscale(&img, latent_scale.max(1)));
    }
    let refs: Vec<&RgbImage> = tiles.iter().collect();
    let channels = render::grid(&refs, 2, 2, None);
    let rows = [
        (
            "the picture x".to_string(),
            render::upscale(&render::to_rgb8(&x.get(0)?)?, scale),
        ),
        (
            format!(
                "its latent z: {} channels of {}x{} (grey = 0, black and white = -2 and +2 sigma)",
                z.dim(1)?,
                z.dim(2)?,
                z.dim(3)?
            ),
            channels,
        ),
        (
            "the decoded z: the reconstruction".to_string(),
            render::upscale(&render::to_rgb8(&back.get(0)?)?, scale),
        ),
    ];
    let title = "an autoencoder's round trip: what latent diffusion denoises";
    render::save_png(&render::labelled_rows(title, &rows), out)?;
    let values = z.flatten_all()?.to_vec1::<f32>()?;
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = values
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    Ok(AutoencodeReport {
        image: path.display().to_string(),
        out: out.display().to_string(),
        psnr_db: psnr(&back, &x)?,
        latent_shape: z.dims().to_vec(),
        latent_std: var.sqrt(),
    })
}
