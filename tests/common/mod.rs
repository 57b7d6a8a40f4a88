//! Helpers shared by the tests: running the real `diffuse` binary, and comparing tensors.
#![allow(dead_code)]

pub mod server;

use std::path::Path;
use std::process::{Command, Output};

/// Runs the binary with `args`.
pub fn diffuse(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_diffuse"))
        .args(args)
        .output()
        .expect("run diffuse")
}

/// A path as &str.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Checks a failing run: non-zero status, one line on stderr containing `needle`, no panic.
pub fn assert_fails_with(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "expected failure for {needle}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one-line error, got: {err}"
    );
    assert!(err.contains(needle), "stderr {err:?} lacks {needle:?}");
    assert!(!err.contains("panicked"), "{err}");
}

/// The `run.json` a command wrote into `dir`.
pub fn run_json(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap()
}

/// Every value of `t`, flattened, as f32.
pub fn to_vec(t: &candle_core::Tensor) -> Vec<f32> {
    t.flatten_all()
        .unwrap()
        .to_dtype(candle_core::DType::F32)
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// max |a − b| over all elements.
pub fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// A UNet small enough to train in a test: two levels of 8 and 16 channels.
pub fn tiny_unet() -> diffuse::unet::UNetConfig {
    diffuse::unet::UNetConfig {
        base_channels: 8,
        channel_mult: vec![1, 2],
        attention_resolutions: vec![16],
        groups: 4,
        num_heads: 2,
        ..Default::default()
    }
}

/// A text-model UNet small enough for a test: 16 px, 8/16 channels, cross-attention at 8 px
/// and in the middle, a one-layer text encoder of width 16 over the emoji vocabulary.
pub fn tiny_text_unet() -> diffuse::unet::UNetConfig {
    let mut text = diffuse::text::TextConfig::emoji();
    text.dim = 16;
    text.layers = 1;
    text.heads = 2;
    diffuse::unet::UNetConfig {
        image_size: 16,
        base_channels: 8,
        channel_mult: vec![1, 2],
        groups: 4,
        num_heads: 2,
        attention_resolutions: Vec::new(),
        cross_attention_resolutions: vec![8],
        vocab: diffuse::unet::Vocabulary { slots: Vec::new() },
        text: Some(text),
        ..Default::default()
    }
}

/// The picture the tests diffuse.
pub const SCENE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/scene.png");

/// Every command that writes an output folder, at tiny settings and without `--out`:
/// generate, noise, invert and interpolate (their folders' titles are `diffuse <command>`),
/// with the shapes model.
pub fn tiny_folder_runs() -> [Vec<&'static str>; 4] {
    [
        vec![
            "generate",
            "--model",
            "shapes32",
            "--prompt",
            "a red circle",
            "--steps",
            "2",
            "--frames",
            "2",
        ],
        vec![
            "noise", "--image", SCENE, "--size", "16x16", "--frames", "2",
        ],
        vec![
            "invert", "--model", "shapes32", "--image", SCENE, "--steps", "2",
        ],
        vec![
            "interpolate",
            "--model",
            "shapes32",
            "--prompt",
            "a red circle",
            "--seed",
            "1",
            "--seed-to",
            "2",
            "--frames",
            "2",
            "--steps",
            "2",
        ],
    ]
}
