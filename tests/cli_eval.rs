//! `diffuse eval` and model loading: the built-in model, the judge's self-test, and one-line
//! errors for broken model files.

mod common;
use common::{assert_fails_with, diffuse, s};

use std::collections::HashMap;
use std::path::Path;

use candle_core::Device;
use diffuse::io::safetensors;
use diffuse::model::{ModelMeta, MODEL_KEY};
use diffuse::train::{TrainConfig, Trainer};
use diffuse::unet::UNetConfig;

#[test]
fn the_built_in_models_load_with_a_valid_config() {
    let m = diffuse::model::load(None, &Device::Cpu).unwrap();
    assert_eq!(m.meta.unet.image_size, 64, "the default is emoji64");
    assert!(m.meta.unet.text.is_some());
    assert!(m.meta.unet.validate().is_ok());
    assert!(m.meta.trained_steps > 0);
    diffuse::schedule::NoiseSchedule::new(m.meta.schedule).unwrap();
    let m = diffuse::model::load(Some(Path::new("shapes32")), &Device::Cpu).unwrap();
    assert_eq!(m.meta.unet.image_size, 32);
    assert_eq!(m.meta.unet.vocab, diffuse::unet::Vocabulary::shapes());
    assert!(m.meta.unet.validate().is_ok());
    assert!(m.meta.trained_steps > 0);
}

#[test]
fn judge_self_test_reports_per_noise_level() {
    let o = diffuse(&["eval", "--self-test", "--json"]);
    assert!(o.status.success());
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 5);
    assert_eq!(rows[0]["noise_sigma"], 0.0);
    assert_eq!(rows[0]["tally"]["total"], 1000);
}

#[test]
fn broken_model_files_give_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let eval = |p: &Path| {
        diffuse(&[
            "eval",
            "--model",
            s(p),
            "--steps",
            "2",
            "--samples-per-prompt",
            "1",
        ])
    };

    assert_fails_with(
        &eval(&dir.path().join("missing.safetensors")),
        "missing.safetensors",
    );

    let text = dir.path().join("text.safetensors");
    std::fs::write(&text, b"not a model at all").unwrap();
    assert_fails_with(&eval(&text), "not a valid safetensors file");

    let tiny = TrainConfig {
        unet: common::tiny_unet(),
        batch_size: 1,
        ..Default::default()
    };
    let t = Trainer::new(tiny, &Device::Cpu).unwrap();
    let good = dir.path().join("good.safetensors");
    t.save_model(&good).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let truncated = dir.path().join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() - 1000]).unwrap();
    assert_fails_with(&eval(&truncated), "truncated.safetensors");

    // Tensors of the tiny network under metadata that claims the default one.
    let mismatched = dir.path().join("mismatched.safetensors");
    let meta = ModelMeta {
        format: 1,
        unet: UNetConfig::default(),
        schedule: Default::default(),
        trained_steps: 1,
        sampling: None,
        autoencoder: None,
        data: None,
    };
    safetensors::save_with_meta(&mismatched, &t.ema, MODEL_KEY, &meta).unwrap();
    assert_fails_with(&eval(&mismatched), "weights do not match the config");

    let no_meta = dir.path().join("nometa.safetensors");
    candle_core::safetensors::save(&t.ema, &no_meta).unwrap();
    assert_fails_with(&eval(&no_meta), "has no 'diffuse_model' metadata");

    let bad_meta = dir.path().join("badmeta.safetensors");
    safetensors::save_with_meta(
        &bad_meta,
        &HashMap::from([("x".to_string(), t.ema.values().next().unwrap().clone())]),
        MODEL_KEY,
        &"oops",
    )
    .unwrap();
    assert_fails_with(&eval(&bad_meta), "invalid 'diffuse_model' metadata");

    assert_fails_with(
        &diffuse(&["eval", "--model", "shapes32", "--samples-per-prompt", "0"]),
        "--samples-per-prompt 0",
    );
    assert_fails_with(
        &diffuse(&["eval", "--model", "shapes32", "--steps", "0"]),
        "--steps 0",
    );
}

#[test]
fn sweep_measures_every_sampler_and_plots() {
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("sweep.png");
    let o = diffuse(&[
        "eval",
        "--model",
        "shapes32",
        "--sweep",
        s(&plot),
        "--sweep-steps",
        "2",
        "--samples-per-prompt",
        "1",
        "--json",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let points: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let kinds: Vec<&str> = points
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["sampler"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["ddpm", "ddim", "dpm++2m"]);
    assert!(image::open(&plot).is_ok());
}
