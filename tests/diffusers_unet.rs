//! diffusers' `UNet2DModel` in diffuse against diffusers 0.42.1 itself: the same random
//! weights (read from the folder `save_pretrained` wrote) and inputs give the same output
//! within 1e-4. `tests/reference/gen_unet2d.py` made the fixtures and says how.

mod common;

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use diffuse::diffusers::{UNet2DConfig, UNet2DModel};

fn check(name: &str) -> f32 {
    check_in(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/unet2d"),
        name,
    )
}

/// Loads `root/name` as diffusers wrote it and returns the largest difference from its
/// recorded output.
fn check_in(root: &Path, name: &str) -> f32 {
    let dir = root.join(name);
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let config = UNet2DConfig::from_json(&text, "config.json").unwrap();
    let weights = candle_core::safetensors::load(
        dir.join("diffusion_pytorch_model.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let vb = VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu);
    let model = UNet2DModel::new(&config, vb).unwrap();
    let io = candle_core::safetensors::load(dir.join("io.safetensors"), &Device::Cpu).unwrap();
    let t: Vec<f64> = io["timesteps"]
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect();
    let labels = io
        .get("class_labels")
        .map(|l| l.to_dtype(DType::U32).unwrap());
    let out = model.forward(&io["sample"], &t, labels.as_ref()).unwrap();
    assert_eq!(out.dims(), io["output"].dims());
    let err = common::max_abs_diff(&out, &io["output"]);
    println!("{name}: max |diffuse - diffusers| = {err:.2e}");
    err
}

#[test]
fn a_plain_unet2d_matches_diffusers() {
    let err = check("plain");
    assert!(err < 1e-4, "max |diffuse - diffusers| = {err}");
}

#[test]
fn a_class_conditional_scale_shift_unet2d_matches_diffusers() {
    let err = check("scale_shift_class");
    assert!(err < 1e-4, "max |diffuse - diffusers| = {err}");
}

#[test]
fn unsupported_configs_are_refused_by_name() {
    let base = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/unet2d/plain/config.json"),
    )
    .unwrap();
    let err = |from: &str, to: &str| {
        let text = base.replacen(from, to, 1);
        assert_ne!(text, base, "{from}");
        UNet2DConfig::from_json(&text, "config.json")
            .unwrap_err()
            .to_string()
    };
    assert!(err("\"DownBlock2D\"", "\"SkipDownBlock2D\"")
        .contains("down_block_types = SkipDownBlock2D is not supported"));
    assert!(err("\"positional\"", "\"fourier\"")
        .contains("time_embedding_type = fourier is not supported"));
    assert!(
        err("\"act_fn\"", "\"mystery_key\": 1, \"act_fn\"").contains("unknown field `mystery_key`")
    );
    assert!(err("\"default\"", "\"ada_group\"").contains("resnet_time_scale_shift = ada_group"));
}

#[test]
fn a_class_conditional_model_needs_a_class() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/unet2d/scale_shift_class");
    let model = diffuse::diffusers::load_folder(&dir, &Device::Cpu)
        .unwrap()
        .unet;
    let x = candle_core::Tensor::zeros((1, 3, 16, 16), DType::F32, &Device::Cpu).unwrap();
    let e = model.forward(&x, &[10.0], None).unwrap_err().to_string();
    assert!(
        e.contains("this model is class-conditional: give it a class label"),
        "{e}"
    );
}

#[test]
fn a_learned_time_embedding_matches_diffusers() {
    let err = check("learned_time");
    assert!(err < 1e-4, "max |diffuse - diffusers| = {err}");
    // Its table has a row per training timestep, and nothing between or past them.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/unet2d/learned_time");
    let model = diffuse::diffusers::load_folder(&dir, &Device::Cpu)
        .unwrap()
        .unet;
    let x = candle_core::Tensor::zeros((1, 3, 16, 16), DType::F32, &Device::Cpu).unwrap();
    assert!(model.forward(&x, &[0.0], None).is_ok());
    for t in [1000.0, 10.5, -1.0] {
        let e = model.forward(&x, &[t], None).unwrap_err().to_string();
        assert!(e.contains("rows for the timesteps 0..1000"), "{t}: {e}");
    }
    // Without num_train_timesteps the table's size is unknown.
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let text = text.replace(
        "\"num_train_timesteps\": 1000",
        "\"num_train_timesteps\": null",
    );
    let e = UNet2DConfig::from_json(&text, "config.json").unwrap_err();
    assert!(
        e.to_string().contains("learned needs num_train_timesteps"),
        "{e}"
    );
}

#[test]
fn resnet_resampling_blocks_match_diffusers() {
    let err = check("resnet_resample");
    assert!(err < 1e-4, "max |diffuse - diffusers| = {err}");
}

/// A 1 M-parameter toy and the exact architectures of `google/ddpm-cifar10-32` and of the
/// course's butterflies model,
/// with random weights too large to commit: `tests/reference/gen_unet2d.py DIR --large`
/// writes them, and `DIFFUSE_UNET2D_LARGE=DIR` points this test at them.
#[test]
#[ignore = "needs the large fixtures: see tests/reference/gen_unet2d.py"]
fn large_architectures_match_diffusers() {
    let dir = std::env::var("DIFFUSE_UNET2D_LARGE")
        .expect("set DIFFUSE_UNET2D_LARGE to the folder gen_unet2d.py --large wrote");
    for name in ["toy_1m", "cifar10_32", "butterflies_32"] {
        let err = check_in(Path::new(&dir), name);
        assert!(err < 1e-4, "{name}: max |diffuse - diffusers| = {err}");
    }
}
