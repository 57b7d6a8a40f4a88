//! The autoencoder of latent diffusion: diffusers' `AutoencoderKL` weight names and shapes,
//! its config checks, and with the real binary: training that resumes exactly and stays in its
//! run folder, the measured scaling factor stored in the file, `autoencode`'s picture and
//! measurement, and its bad inputs.

mod common;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarMap;
use diffuse::nn::init::SeededInit;
use diffuse::vae::train::{load_autoencoder, measure_scaling_factor};
use diffuse::vae::{AutoencoderKL, AutoencoderKLConfig};

fn built() -> (VarMap, AutoencoderKL) {
    let varmap = VarMap::new();
    let vb = SeededInit::var_builder(&varmap, 0, &Device::Cpu);
    let ae = AutoencoderKL::new(&AutoencoderKLConfig::default(), vb).unwrap();
    (varmap, ae)
}

#[test]
fn weights_carry_diffusers_names_and_shapes() {
    let (varmap, _) = built();
    let data = varmap.data().lock().unwrap();
    for (name, shape) in [
        ("encoder.conv_in.weight", vec![32, 3, 3, 3]),
        (
            "encoder.down_blocks.0.resnets.0.conv1.weight",
            vec![32, 32, 3, 3],
        ),
        (
            "encoder.down_blocks.0.downsamplers.0.conv.weight",
            vec![32, 32, 3, 3],
        ),
        (
            "encoder.down_blocks.2.resnets.0.conv_shortcut.weight",
            vec![64, 32, 1, 1],
        ),
        ("encoder.mid_block.attentions.0.to_q.weight", vec![64, 64]),
        ("encoder.mid_block.attentions.0.group_norm.weight", vec![64]),
        ("encoder.conv_out.weight", vec![8, 64, 3, 3]),
        ("quant_conv.weight", vec![8, 8, 1, 1]),
        ("post_quant_conv.weight", vec![4, 4, 1, 1]),
        ("decoder.conv_in.weight", vec![64, 4, 3, 3]),
        (
            "decoder.up_blocks.0.resnets.1.conv2.weight",
            vec![64, 64, 3, 3],
        ),
        (
            "decoder.up_blocks.0.upsamplers.0.conv.weight",
            vec![64, 64, 3, 3],
        ),
        (
            "decoder.up_blocks.2.resnets.0.conv1.weight",
            vec![32, 32, 3, 3],
        ),
        ("decoder.conv_norm_out.weight", vec![32]),
        ("decoder.conv_out.weight", vec![3, 32, 3, 3]),
    ] {
        let v = data.get(name).unwrap_or_else(|| panic!("no weight {name}"));
        assert_eq!(v.dims(), shape.as_slice(), "{name}");
    }
    // No timestep projections: an autoencoder's ResNets take no timestep.
    assert!(!data.keys().any(|k| k.contains("time_emb_proj")));
    // The decoder has one ResNet more per block than the encoder, as diffusers'.
    assert!(data.contains_key("decoder.up_blocks.2.resnets.1.conv1.weight"));
    assert!(!data.contains_key("encoder.down_blocks.0.resnets.1.conv1.weight"));
}

#[test]
fn shapes_through_the_encoder_and_decoder() {
    let (_, ae) = built();
    let x = Tensor::zeros((2, 3, 64, 64), DType::F32, &Device::Cpu).unwrap();
    let p = ae.encode(&x).unwrap();
    assert_eq!(p.mean.dims(), &[2, 4, 16, 16]);
    assert_eq!(p.logvar.dims(), &[2, 4, 16, 16]);
    assert_eq!(ae.decode(&p.mean).unwrap().dims(), &[2, 3, 64, 64]);
    assert_eq!(ae.encoder.forward(&x).unwrap().dims(), &[2, 8, 16, 16]);
    // The KL of the standard normal is 0.
    let z = Tensor::zeros((1, 4, 16, 16), DType::F32, &Device::Cpu).unwrap();
    let unit = diffuse::vae::Posterior {
        mean: z.clone(),
        logvar: z,
    };
    assert_eq!(unit.kl().unwrap().to_scalar::<f32>().unwrap(), 0.0);
}

#[test]
fn configs_that_do_not_fit_are_refused_by_name() {
    let bad = |f: fn(&mut AutoencoderKLConfig)| {
        let mut c = AutoencoderKLConfig::default();
        f(&mut c);
        c.validate().unwrap_err().to_string()
    };
    assert!(bad(|c| c.block_out_channels.clear()).contains("block_out_channels"));
    assert!(bad(|c| c.norm_num_groups = 7).contains("norm_num_groups"));
    assert!(bad(|c| c.sample_size = 66).contains("sample_size"));
    assert!(bad(|c| c.scaling_factor = 0.0).contains("scaling_factor"));
    assert_eq!(AutoencoderKLConfig::default().factor(), 4);
    assert_eq!(AutoencoderKLConfig::default().latent_size(), 16);
}

fn train(dir: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let out = dir.join("ae.safetensors");
    let mut args = vec![
        "-q",
        "--threads",
        "2",
        "train-autoencoder",
        "--out",
        common::s(&out),
    ];
    if !extra.contains(&"--resume") {
        // A resumed run takes its batch and checkpoint interval from the checkpoint.
        args.extend(["--batch-size", "2", "--checkpoint-every", "2"]);
    }
    args.extend_from_slice(extra);
    common::diffuse(&args)
}

#[test]
fn training_resumes_exactly_in_its_own_run_folder() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let run_a = a.path().join("run");
    let o = train(a.path(), &["--steps", "4", "--run-dir", common::s(&run_a)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run_b = b.path().join("run");
    let o = train(b.path(), &["--steps", "2", "--run-dir", common::s(&run_b)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ckpt = run_b.join("checkpoint.safetensors");
    let o = train(b.path(), &["--steps", "4", "--resume", common::s(&ckpt)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bytes = |d: &std::path::Path| std::fs::read(d.join("ae.safetensors")).unwrap();
    assert_eq!(bytes(a.path()), bytes(b.path()), "resumed weights differ");
    // The resumed run logged into the checkpoint's folder: every step, once.
    let log = std::fs::read_to_string(run_b.join("train_log.csv")).unwrap();
    let steps: Vec<&str> = log
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(steps, ["1", "2", "3", "4"]);
    assert!(log.starts_with("step,loss,lr,grad_norm,elapsed_s,l1,edge,kl\n"));
    for f in ["loss.png", "recon.png", "commands.txt"] {
        assert!(run_b.join(f).is_file(), "{f}");
    }
    // The stored scaling factor is 1 / the std of the training scenes' latents.
    let (meta, ae) = load_autoencoder(&a.path().join("ae.safetensors"), &Device::Cpu).unwrap();
    let measured = measure_scaling_factor(&ae, meta.data_seed).unwrap();
    assert_eq!(meta.autoencoder.scaling_factor, measured);
    assert_ne!(measured, 1.0);
    assert_eq!((meta.trained_steps, meta.batch_size), (4, 2));
}

#[test]
fn autoencode_draws_the_round_trip_and_measures_unseen_scenes() {
    let dir = tempfile::tempdir().unwrap();
    let o = train(
        dir.path(),
        &[
            "--steps",
            "2",
            "--run-dir",
            common::s(&dir.path().join("run")),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let model = dir.path().join("ae.safetensors");
    let png = dir.path().join("round-trip.png");
    let scene = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/scene.png");
    let o = common::diffuse(&[
        "-q",
        "autoencode",
        "--model",
        common::s(&model),
        "--image",
        common::s(&scene),
        "--out",
        common::s(&png),
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["latent_shape"], serde_json::json!([1, 4, 16, 16]));
    assert!(image::open(&png).unwrap().width() >= 256);
    // Writing it again needs --force.
    let again = common::diffuse(&[
        "-q",
        "autoencode",
        "--model",
        common::s(&model),
        "--image",
        common::s(&scene),
        "--out",
        common::s(&png),
    ]);
    common::assert_fails_with(&again, "--force");
    let o = common::diffuse(&[
        "-q",
        "autoencode",
        "--model",
        common::s(&model),
        "--eval",
        "4",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let e: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(e["scenes"], 4);
    assert!(e["psnr_db"].as_f64().unwrap().is_finite());
    assert!(e["objects_scenes"].as_f64().unwrap() > 0.5);
}

#[test]
fn bad_autoencoder_inputs_are_one_line_errors() {
    let o = common::diffuse(&["autoencode", "--model", "nope.safetensors", "--eval", "0"]);
    common::assert_fails_with(&o, "--eval 0 is out of range");
    assert_eq!(o.status.code(), Some(2));
    let o = common::diffuse(&["autoencode", "--model", "nope.safetensors", "--eval", "3"]);
    common::assert_fails_with(&o, "nope.safetensors");
    assert_eq!(o.status.code(), Some(1));
    let dir = tempfile::tempdir().unwrap();
    let o = train(dir.path(), &["--steps", "2", "--edge-weight", "-1"]);
    common::assert_fails_with(&o, "--edge-weight -1");
    let o = train(dir.path(), &["--steps", "0"]);
    common::assert_fails_with(&o, "--steps 0");
}
