//! Latent diffusion end to end with the real binary: an autoencoder and a latent denoiser
//! trained for a few steps, resumed exactly, and sampled (the pictures decoded from latents);
//! plus the pieces' exact values: Min-SNR-γ weights, the 2D position signal, the latent
//! sampler settings and the config checks.

mod common;

use candle_core::{Device, Tensor};
use common::{assert_fails_with, diffuse, s};
use diffuse::schedule::{NoiseSchedule, ScheduleConfig};
use diffuse::train::latent::{min_snr_weights, weighted_mse};
use diffuse::unet::transformer::sincos_2d;
use diffuse::unet::{Prediction, UNetConfig};

/// A 2-step autoencoder in `dir`/ae.safetensors.
fn autoencoder(dir: &std::path::Path) -> std::path::PathBuf {
    let ae = dir.join("ae.safetensors");
    let o = diffuse(&[
        "-q",
        "train-autoencoder",
        "--out",
        s(&ae),
        "--run-dir",
        s(&dir.join("ae-run")),
        "--steps",
        "2",
        "--batch-size",
        "2",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    ae
}

/// `diffuse train` of a small latent denoiser on `ae`'s latents.
fn train_latent(
    ae: &std::path::Path,
    dir: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    let out = dir.join("latent.safetensors");
    let mut args = vec!["-q", "train", "--out", s(&out)];
    if !extra.contains(&"--resume") {
        args.extend([
            "--data",
            "emoji",
            "--autoencoder",
            s(ae),
            "--base-channels",
            "16",
            "--batch-size",
            "2",
            "--checkpoint-every",
            "2",
            "--preview-steps",
            "2",
            "--snr-gamma",
            "5",
            "--position-embedding",
        ]);
    }
    args.extend_from_slice(extra);
    diffuse(&args)
}

#[test]
fn a_latent_model_trains_resumes_exactly_and_samples_pictures() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ae = autoencoder(a.path());
    let run_a = a.path().join("run");
    let o = train_latent(&ae, a.path(), &["--steps", "4", "--run-dir", s(&run_a)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run_b = b.path().join("run");
    let o = train_latent(&ae, b.path(), &["--steps", "2", "--run-dir", s(&run_b)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ckpt = run_b.join("checkpoint.safetensors");
    let o = train_latent(
        &ae,
        b.path(),
        &["--steps", "4", "--resume", s(&ckpt), "--force"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let model = a.path().join("latent.safetensors");
    let bytes = |p: &std::path::Path| std::fs::read(p).unwrap();
    assert_eq!(bytes(&model), bytes(&b.path().join("latent.safetensors")));
    assert!(run_b.join("preview_000004.png").is_file());

    // The model file carries the autoencoder: it loads alone and denoises 4×16×16 latents.
    let m = diffuse::model::load(Some(&model), &Device::Cpu).unwrap();
    assert_eq!((m.meta.unet.in_channels, m.meta.unet.image_size), (4, 16));
    assert_eq!(m.picture_size(), 64);
    assert!(m.vae.is_some());
    let config = m.sampler_config(diffuse::sampler::SamplerKind::Ddpm, 20);
    assert!(
        !config.clip_sample && !config.thresholding,
        "latents are not clipped"
    );

    // generate writes 64×64 pictures decoded from the latents.
    let out = a.path().join("gen");
    let o = diffuse(&[
        "-q",
        "generate",
        "--model",
        s(&model),
        "--prompt",
        "a cat",
        "--steps",
        "3",
        "--num-images",
        "1",
        "--seed",
        "1",
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let img = image::open(out.join("sample_00.png")).unwrap();
    assert_eq!((img.width(), img.height()), (64, 64));
    every_editing_command_works_in_latent_space(&model, a.path());
}

/// img2img, inpaint (both methods), invert, interpolate and compare with a latent model.
fn every_editing_command_works_in_latent_space(model: &std::path::Path, dir: &std::path::Path) {
    let scenes = dir.join("scenes");
    let ok = |args: &[&str]| {
        let o = diffuse(args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    ok(&[
        "-q",
        "data",
        "emoji",
        "--count",
        "1",
        "--seed",
        "99",
        "--out",
        s(&scenes),
    ]);
    let picture = scenes.join("000000.png");
    let mask = dir.join("mask.png");
    let square = |x: u32, y: u32| (20..44).contains(&x) && (20..44).contains(&y);
    image::GrayImage::from_fn(64, 64, |x, y| {
        image::Luma([if square(x, y) { 255 } else { 0 }])
    })
    .save(&mask)
    .unwrap();
    let m = s(model);
    let common = [
        "--model",
        m,
        "--prompt",
        "a cat",
        "--steps",
        "4",
        "--num-images",
        "1",
    ];
    let out = |name: &str| dir.join(name);
    let i2i = out("i2i");
    ok(&[
        &["-q", "img2img", "--image", s(&picture), "--out", s(&i2i)],
        &common[..],
    ]
    .concat());
    assert!(i2i.join("sample_00.png").is_file());
    let input = image::open(&picture).unwrap().to_rgb8();
    for method in ["replace", "repaint"] {
        let o = out(method);
        let args = [
            &[
                "-q",
                "inpaint",
                "--image",
                s(&picture),
                "--mask",
                s(&mask),
                "--method",
                method,
            ],
            &["--out", s(&o)][..],
            &common[..],
        ]
        .concat();
        ok(&args);
        // The kept pixels are the input's: pasted back in pixel space after decoding.
        let sample = image::open(o.join("sample_00.png")).unwrap().to_rgb8();
        let mut kept = 0;
        for (x, y, p) in input.enumerate_pixels() {
            if !square(x, y) {
                assert_eq!(sample.get_pixel(x, y), p, "{method}: kept pixel ({x}, {y})");
                kept += 1;
            }
        }
        assert_eq!(kept, 64 * 64 - 24 * 24);
    }
    let inv = out("invert");
    ok(&[
        "-q",
        "invert",
        "--model",
        m,
        "--image",
        s(&picture),
        "--prompt",
        "a cat",
        "--steps",
        "4",
        "--out",
        s(&inv),
    ]);
    let report = common::run_json(&inv);
    assert!(report["psnr_db"].as_f64().unwrap().is_finite());
    let rec = image::open(inv.join("reconstruction.png")).unwrap();
    assert_eq!((rec.width(), rec.height()), (64, 64));
    let walk = out("walk");
    ok(&[
        "-q",
        "interpolate",
        "--model",
        m,
        "--prompt",
        "a cat",
        "--prompt-to",
        "a dog",
        "--frames",
        "2",
        "--steps",
        "3",
        "--out",
        s(&walk),
    ]);
    let grid = out("compare.png");
    ok(&[
        "-q",
        "compare",
        "--model",
        m,
        "--prompt",
        "a cat",
        "--steps",
        "3",
        "--guidance",
        "1,3",
        "--out",
        s(&grid),
    ]);
}

#[test]
fn min_snr_weights_are_min_snr_gamma_over_snr() {
    let schedule = NoiseSchedule::new(ScheduleConfig::default()).unwrap();
    let t = [0usize, 500, 999];
    let w = |p| {
        let w = min_snr_weights(&schedule, &t, 5.0, p, &Device::Cpu).unwrap();
        w.to_vec1::<f32>().unwrap()
    };
    let (eps, v) = (w(Prediction::Epsilon), w(Prediction::VPrediction));
    for (i, &t) in t.iter().enumerate() {
        let snr = schedule.snr(t);
        assert_eq!(eps[i], (snr.min(5.0) / snr) as f32);
        assert_eq!(v[i], (snr.min(5.0) / (snr + 1.0)) as f32);
    }
    // At t = 0 the SNR is far above γ: the weight is γ / SNR, well below 1.
    assert!(eps[0] < 0.01);
    // At t = 999 the SNR is below γ: ε-prediction keeps weight 1.
    assert_eq!(eps[2], 1.0);
    // The weighted MSE weighs each sample's own MSE.
    let dev = Device::Cpu;
    let pred = Tensor::new(&[[1f32, 1.0], [0.0, 0.0]], &dev).unwrap();
    let target = Tensor::zeros((2, 2), candle_core::DType::F32, &dev).unwrap();
    let weights = Tensor::new(&[0.5f32, 3.0], &dev).unwrap();
    let loss = weighted_mse(&pred, &target, &weights).unwrap();
    assert_eq!(loss.to_scalar::<f32>().unwrap(), 0.25);
}

#[test]
fn the_position_signal_is_2d_sincos() {
    let p = sincos_2d(4, 8, &Device::Cpu).unwrap(); // [1, 16, 8]
    assert_eq!(p.dims(), &[1, 16, 8]);
    let rows = p.squeeze(0).unwrap().to_vec2::<f32>().unwrap();
    // Pixel (0, 0): sin 0 = 0 and cos 0 = 1 for rows and columns.
    assert_eq!(rows[0], [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0]);
    // Pixel (y 1, x 2) = token 6: the first half encodes the row, the second the column.
    let r = &rows[6];
    let sc = |a: f64| (a.sin() as f32, a.cos() as f32);
    assert_eq!((r[0], r[2]), sc(1.0));
    assert_eq!((r[4], r[6]), sc(2.0));
    assert_eq!(r[1], (1.0f64 * 0.01).sin() as f32); // frequency 10000^(-1/2)
                                                    // Every token differs from every other.
    for i in 0..16 {
        for j in 0..i {
            assert_ne!(rows[i], rows[j], "tokens {i} and {j}");
        }
    }
}

#[test]
fn latent_configs_that_do_not_fit_are_refused() {
    let mut c = UNetConfig::emoji_latent(&Default::default());
    assert_eq!(
        (
            c.image_size,
            c.in_channels,
            c.cross_attention_resolutions.clone()
        ),
        (16, 4, vec![8, 4])
    );
    c.only_cross_attention = vec![16];
    let e = c.validate().unwrap_err().to_string();
    assert!(
        e.contains("only_cross_attention at 16 px needs cross-attention there"),
        "{e}"
    );

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.safetensors");
    let missing = dir.path().join("no-ae.safetensors");
    let o = diffuse(&[
        "train",
        "--data",
        "emoji",
        "--autoencoder",
        s(&missing),
        "--out",
        s(&out),
    ]);
    assert_fails_with(&o, "no-ae.safetensors");
    let ae = autoencoder(dir.path());
    let o = diffuse(&["train", "--autoencoder", s(&ae), "--out", s(&out)]);
    assert_fails_with(&o, "give --data emoji");
    let o = diffuse(&[
        "train",
        "--data",
        "emoji",
        "--autoencoder",
        s(&ae),
        "--snr-gamma",
        "0",
        "--out",
        s(&out),
    ]);
    assert_fails_with(&o, "--snr-gamma 0");
}
