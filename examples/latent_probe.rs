//! Measures the latent option of the text-to-image model (models/README.md, "Pixels or
//! latents"): trains a small f = 4 autoencoder on emoji scenes, then the emoji text UNet on its
//! 4×16×16 latents, samples the judge's prompt set in latent space, decodes and judges it.
//!
//! `cargo run --release --example latent_probe -- AE_STEPS DENOISER_STEPS SAMPLES_PER_PROMPT [OUT_DIR]`
//! (batch 32, the trainer's defaults: lr 1e-3, 200 warm-up steps, cosine to 5 %, clipping at 1,
//! EMA 0.999, caption dropout 10 %; sampling as `diffuse eval`: DDPM, 20 steps, guidance 3,
//! seed 0). Prints timings, the autoencoder's reconstruction figures and the judge's table;
//! with OUT_DIR also writes `recon.png` (scenes over their reconstructions) and `samples.png`.
use std::collections::HashMap;
use std::time::Instant;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use diffuse::data::emoji::{self, Scene};
use diffuse::jobs::eval_emoji::{prompt_set, Counts, Group};
use diffuse::judge::emoji::read;
use diffuse::nn::layers::{conv2d, group_norm, Conv2d, GroupNorm};
use diffuse::nn::{init::SeededInit, upsample::upsample_nearest2x};
use diffuse::sampler::{SamplerConfig, SamplerKind};
use diffuse::schedule::NoiseSchedule;
use diffuse::train::optim::{lr_at, AdamW};
use diffuse::train::{named_vars, TrainConfig};
use diffuse::unet::{cond_tensor, UNet, UNetConfig};
use diffuse::{pipeline, render, rng, Result};
use image::RgbImage;
use rand::Rng as _;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 32;
/// Data seeds: the autoencoder's scenes, the denoiser's, and the reconstruction test's.
const AE_DATA_SEED: u64 = 7;
const DENOISER_DATA_SEED: u64 = 1;
const TEST_DATA_SEED: u64 = 99;

/// GroupNorm + SiLU, an optional 2× upsampling, then a 3×3 conv; residual when the shape keeps.
struct Block {
    norm: GroupNorm,
    conv: Conv2d,
    up: bool,
    residual: bool,
}

fn block(cin: usize, cout: usize, stride: usize, up: bool, vb: VarBuilder) -> Result<Block> {
    Ok(Block {
        norm: group_norm(8, cin, vb.pp("norm"))?,
        conv: conv2d(cin, cout, 3, stride, vb.pp("conv"))?,
        up,
        residual: cin == cout && stride == 1 && !up,
    })
}

impl Block {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = self.norm.forward(x, true)?;
        if self.up {
            h = upsample_nearest2x(&h)?; // [B, C, 2H, 2W]
        }
        let h = self.conv.forward(&h)?;
        if self.residual {
            x + h
        } else {
            Ok(h)
        }
    }
}

/// A conv in, a stack of blocks, and a last block without a residual.
struct Stack {
    conv_in: Conv2d,
    blocks: Vec<Block>,
}

impl Stack {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = self.conv_in.forward(x)?;
        for b in &self.blocks {
            h = b.forward(&h)?;
        }
        Ok(h)
    }
}

/// Encoder 3×64×64 → 4×16×16 and decoder back; deterministic (no KL term), its latents
/// rescaled to unit variance afterwards, as Stable Diffusion's scale factor does.
struct AutoEncoder {
    encoder: Stack,
    decoder: Stack,
}

fn autoencoder(vb: VarBuilder) -> Result<AutoEncoder> {
    let (e, d) = (vb.pp("encoder"), vb.pp("decoder"));
    let encoder = Stack {
        conv_in: conv2d(3, 32, 3, 1, e.pp("conv_in"))?,
        blocks: vec![
            block(32, 64, 2, false, e.pp("down1"))?, // 32 px
            block(64, 64, 2, false, e.pp("down2"))?, // 16 px
            block(64, 64, 1, false, e.pp("res"))?,
            block(64, 4, 1, false, e.pp("out"))?,
        ],
    };
    let decoder = Stack {
        conv_in: conv2d(4, 64, 3, 1, d.pp("conv_in"))?,
        blocks: vec![
            block(64, 64, 1, false, d.pp("res16"))?,
            block(64, 64, 1, true, d.pp("up1"))?, // 32 px
            block(64, 64, 1, false, d.pp("res32"))?,
            block(64, 32, 1, true, d.pp("up2"))?, // 64 px
            block(32, 32, 1, false, d.pp("res64"))?,
            block(32, 3, 1, false, d.pp("out"))?,
        ],
    };
    Ok(AutoEncoder { encoder, decoder })
}

/// Scenes `start..start+count` of `seed` as `[B, 3, 64, 64]` in [-1, 1], with the scenes.
fn scenes(seed: u64, start: u64, count: usize, dev: &Device) -> Result<(Tensor, Vec<Scene>)> {
    let s = emoji::SIZE as usize;
    let mut x = Vec::with_capacity(count * 3 * s * s);
    let mut out = Vec::with_capacity(count);
    for (scene, img) in emoji::render_range(seed, start, count) {
        diffuse::io::image::push_chw(&mut x, &img);
        out.push(scene);
    }
    Ok((Tensor::from_vec(x, (count, 3, s, s), dev)?, out))
}

/// One clipped AdamW step on `loss` at step `step` of `total`, with the trainer's lr schedule.
fn optimise(opt: &mut AdamW, loss: &Tensor, step: u64, total: u64) -> Result<()> {
    let cfg = TrainConfig::default();
    let lr = lr_at(step, total, cfg.warmup_steps, cfg.lr, cfg.lr_final_fraction);
    opt.step_clipped(&loss.backward()?, lr, cfg.grad_clip)?;
    Ok(())
}

/// Trains the autoencoder for `steps` steps of L1 reconstruction loss.
fn train_autoencoder(steps: u64, dev: &Device) -> Result<AutoEncoder> {
    let varmap = VarMap::new();
    let ae = autoencoder(SeededInit::var_builder(&varmap, 0, dev))?;
    let mut opt = AdamW::new(named_vars(&varmap)?, TrainConfig::default().adamw)?;
    let start = Instant::now();
    for step in 0..steps {
        let (x, _) = scenes(AE_DATA_SEED, step * BATCH as u64, BATCH, dev)?; // [B, 3, 64, 64]
        let recon = ae.decoder.forward(&ae.encoder.forward(&x)?)?; // [B, 3, 64, 64]
        let loss = (recon - &x)?.abs()?.mean_all()?;
        optimise(&mut opt, &loss, step, steps)?;
        if (step + 1) % 100 == 0 {
            let l = loss.to_scalar::<f32>()?;
            eprintln!("autoencoder step {}: L1 {l:.4}", step + 1);
        }
    }
    println!(
        "autoencoder: {steps} steps in {:.1} min ({:.3} s per step)",
        start.elapsed().as_secs_f64() / 60.0,
        start.elapsed().as_secs_f64() / steps.max(1) as f64
    );
    Ok(ae)
}

/// Images `[B, 3, H, W]` in [-1, 1] → RGB pictures.
fn pictures(x: &Tensor) -> Result<Vec<RgbImage>> {
    (0..x.dim(0)?)
        .map(|i| render::to_rgb8(&x.get(i)?))
        .collect()
}

/// The latent scale factor (1 / std of the latents), PSNR and the judge on reconstructions
/// of 256 unseen scenes, against the judge on the scenes themselves.
fn check_autoencoder(ae: &AutoEncoder, out: Option<&str>, dev: &Device) -> Result<f64> {
    let (x, sc) = scenes(TEST_DATA_SEED, 0, 256, dev)?; // [256, 3, 64, 64]
    let z = ae.encoder.forward(&x)?; // [256, 4, 16, 16]
    let std = z.flatten_all()?.var(0)?.sqrt()?.to_scalar::<f32>()? as f64;
    let recon = ae.decoder.forward(&z)?.clamp(-1f32, 1f32)?;
    let mse = (&recon - &x)?.sqr()?.mean_all()?.to_scalar::<f32>()? as f64;
    let psnr = 10.0 * (4.0 / mse).log10(); // peak-to-peak 2
    let (mut orig, mut rec) = (Counts::default(), Counts::default());
    let (xs, rs) = (pictures(&x)?, pictures(&recon)?);
    for ((s, a), b) in sc.iter().zip(&xs).zip(&rs) {
        let nouns: Vec<usize> = s.objects.iter().map(|o| o.noun).collect();
        orig.add(&read(a, &nouns, s.relation));
        rec.add(&read(b, &nouns, s.relation));
    }
    println!("latent std {std:.4} (scale factor {:.4}); reconstruction PSNR {psnr:.2} dB on 256 unseen scenes", 1.0 / std);
    for (name, c) in [("scenes", &orig), ("reconstructions", &rec)] {
        println!(
            "judge on the {name}: objects {:.1} %, all objects {:.1} %, relation {:.1} %",
            100.0 * c.object_accuracy(),
            100.0 * c.all_accuracy(),
            100.0 * c.relation_accuracy()
        );
    }
    if let Some(dir) = out {
        let top: Vec<RgbImage> = xs
            .into_iter()
            .take(8)
            .chain(rs.into_iter().take(8))
            .collect();
        save_rows(&top, 8, &format!("{dir}/recon.png"))?;
    }
    Ok(1.0 / std)
}

/// The emoji text UNet on 4×16×16 latents: three levels (16, 8, 4 px) of 64 channels with
/// cross-attention at 8 and 4 px and in the middle.
fn latent_config() -> UNetConfig {
    UNetConfig {
        image_size: 16,
        in_channels: 4,
        channel_mult: vec![2, 2, 2],
        cross_attention_resolutions: vec![8, 4],
        ..UNetConfig::emoji()
    }
}

/// Trains the latent UNet for `steps` steps; returns it with the EMA weights.
fn train_denoiser(ae: &AutoEncoder, scale: f64, steps: u64, dev: &Device) -> Result<UNet> {
    let (cfg, tc) = (latent_config(), TrainConfig::default());
    let varmap = VarMap::new();
    let unet = UNet::new(&cfg, SeededInit::var_builder(&varmap, 0, dev))?;
    let vars = named_vars(&varmap)?;
    let mut ema: HashMap<String, Tensor> = vars
        .iter()
        .map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?)))
        .collect::<Result<_>>()?;
    let mut opt = AdamW::new(vars, tc.adamw)?;
    let schedule = NoiseSchedule::new(tc.schedule)?;
    let nulls = diffuse::prompt::null_ids(&cfg);
    let mut r = rng::rng(1);
    let start = Instant::now();
    for step in 0..steps {
        let (x, sc) = scenes(DENOISER_DATA_SEED, step * BATCH as u64, BATCH, dev)?;
        let z0 = ae.encoder.forward(&x)?.affine(scale, 0.0)?.detach(); // [B, 4, 16, 16]
        let mut ids = Vec::with_capacity(BATCH);
        for s in &sc {
            let drop = r.random::<f64>() < tc.cond_drop;
            ids.push(if drop {
                nulls.clone()
            } else {
                diffuse::prompt::encode(&s.caption(), &cfg)?
            });
        }
        let t: Vec<usize> = (0..BATCH)
            .map(|_| r.random_range(0..schedule.len()))
            .collect();
        let eps = rng::randn(&mut r, z0.shape().clone(), dev)?; // [B, 4, 16, 16]
        let z_t = schedule.q_sample(&z0, &t, &eps)?;
        let tf: Vec<f64> = t.iter().map(|&v| v as f64).collect();
        let pred = unet.forward(&z_t, &tf, &cond_tensor(&ids, dev)?)?;
        let loss = candle_nn::loss::mse(&pred, &eps)?;
        optimise(&mut opt, &loss, step, steps)?;
        opt.update_ema(&mut ema, step, tc.ema_decay)?;
        if (step + 1) % 100 == 0 {
            let l = loss.to_scalar::<f32>()?;
            eprintln!("denoiser step {}: loss {l:.4}", step + 1);
        }
    }
    let s = start.elapsed().as_secs_f64();
    println!(
        "latent denoiser: {steps} steps in {:.1} min ({:.3} s per step)",
        s / 60.0,
        s / steps.max(1) as f64
    );
    UNet::new(&cfg, VarBuilder::from_tensors(ema, DType::F32, dev))
}

/// Samples every prompt of the judge's set `k` times in latent space, decodes and judges.
fn evaluate(ae: &AutoEncoder, scale: f64, unet: &UNet, k: usize, out: Option<&str>) -> Result<()> {
    let start = Instant::now();
    let set = prompt_set();
    let dev = unet.device().clone();
    let schedule = NoiseSchedule::new(TrainConfig::default().schedule)?;
    let config = SamplerConfig {
        clip_sample: false, // latents are not bounded to [-1, 1]
        ..SamplerConfig::new(SamplerKind::Ddpm, 20)
    };
    let jobs: Vec<usize> = (0..set.len())
        .flat_map(|p| std::iter::repeat_n(p, k))
        .collect();
    let mut r = rng::rng(0);
    const GROUPS: [Group; 3] = [Group::Single, Group::SeenPair, Group::HeldOutPair];
    let mut groups: [Counts; 3] = Default::default();
    let mut shown = Vec::new();
    for chunk in jobs.chunks(BATCH) {
        let ids = chunk
            .iter()
            .map(|&p| diffuse::prompt::encode(&set[p].caption, &unet.config))
            .collect::<Result<Vec<_>>>()?;
        let nulls = vec![diffuse::prompt::null_ids(&unet.config); ids.len()];
        let guided = pipeline::Guided::new(unet, 3.0, &ids, &nulls)?;
        let mut sampler = diffuse::sampler::build(&config, &schedule)?;
        let z = pipeline::sample(&guided, sampler.as_mut(), &mut r, |_, _| {})?; // [B, 4, 16, 16]
        let x = ae
            .decoder
            .forward(&z.affine(1.0 / scale, 0.0)?)?
            .clamp(-1f32, 1f32)?;
        for (img, &p) in pictures(&x.to_device(&dev)?)?.into_iter().zip(chunk) {
            let reading = read(&img, &set[p].nouns, set[p].relation);
            let g = GROUPS.iter().position(|&g| g == set[p].group).unwrap_or(0);
            groups[g].add(&reading);
            if p % 4 == 0 && shown.len() < 64 {
                shown.push(img);
            }
        }
    }
    println!(
        "sampled and judged {} images in {:.1} s",
        jobs.len(),
        start.elapsed().as_secs_f64()
    );
    println!("| group | samples | objects | all objects | relation |\n|---|---:|---:|---:|---:|");
    for (g, c) in GROUPS.iter().zip(&groups) {
        println!(
            "| {} | {} | {:.1} % | {:.1} % | {:.1} % |",
            g.name(),
            c.samples,
            100.0 * c.object_accuracy(),
            100.0 * c.all_accuracy(),
            100.0 * c.relation_accuracy()
        );
    }
    if let Some(dir) = out {
        save_rows(&shown, 8, &format!("{dir}/samples.png"))?;
    }
    Ok(())
}

/// Writes pictures in rows of `per_row`.
fn save_rows(imgs: &[RgbImage], per_row: usize, path: &str) -> Result<()> {
    let s = emoji::SIZE;
    let rows = imgs.len().div_ceil(per_row) as u32;
    let mut grid = RgbImage::new(s * per_row as u32, s * rows);
    for (i, img) in imgs.iter().enumerate() {
        let (x, y) = ((i % per_row) as u32 * s, (i / per_row) as u32 * s);
        image::imageops::replace(&mut grid, img, x as i64, y as i64);
    }
    render::save_png(&grid, std::path::Path::new(path))
}

fn main() -> Result<()> {
    diffuse::alloc::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    let num = |i: usize, default: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default);
    let (ae_steps, denoiser_steps, k) = (num(1, 1000), num(2, 2000), num(3, 2) as usize);
    let out = args.get(4).map(String::as_str);
    let dev = Device::Cpu;
    let ae = train_autoencoder(ae_steps, &dev)?;
    let scale = check_autoencoder(&ae, out, &dev)?;
    let unet = train_denoiser(&ae, scale, denoiser_steps, &dev)?;
    evaluate(&ae, scale, &unet, k, out)
}
