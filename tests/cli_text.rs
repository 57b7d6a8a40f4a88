//! Text models through the real binary: generating with a (tiny, untrained) text model and its
//! attention maps, and one-line errors for prompts the model cannot read and for broken text
//! model files.

mod common;

use common::{assert_fails_with, diffuse, s};
use diffuse::io::safetensors;
use diffuse::model::{ModelMeta, MODEL_KEY};
use diffuse::train::{TrainConfig, Trainer};
use std::path::{Path, PathBuf};

/// A tiny untrained text model file in `dir`.
fn text_model(dir: &Path) -> PathBuf {
    let config = TrainConfig {
        unet: common::tiny_text_unet(),
        batch_size: 1,
        ..Default::default()
    };
    let t = Trainer::new(config, &candle_core::Device::Cpu).unwrap();
    let path = dir.join("tiny-text.safetensors");
    t.save_model(&path).unwrap();
    path
}

fn generate(model: &Path, prompt: &str, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "generate",
        "--model",
        s(model),
        "--prompt",
        prompt,
        "--steps",
        "3",
        "--num-images",
        "1",
        "--seed",
        "2",
        "--out",
        s(out),
        "--quiet",
    ];
    args.extend_from_slice(extra);
    diffuse(&args)
}

#[test]
fn a_text_model_generates_with_attention_maps() {
    let dir = tempfile::tempdir().unwrap();
    let model = text_model(dir.path());
    let out = dir.path().join("out");
    let o = generate(&model, "a cat with a computer", &out, &["--attention-maps"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in [
        "sample_00.png",
        "attention/1_cat.png",
        "attention/4_computer.png",
        "attention/grid.png",
        "attention/attention.gif",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
    let run = common::run_json(&out);
    let files: Vec<&str> = run["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(files.contains(&"attention/grid.png"));
    // The empty prompt is the unconditional input.
    let o = generate(&model, "", &dir.path().join("uncond"), &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn prompts_a_text_model_cannot_read_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let model = text_model(dir.path());
    let out = dir.path().join("out");
    let fails = |prompt: &str, needle: &str| {
        assert_fails_with(&generate(&model, prompt, &out, &[]), needle);
        assert!(!out.exists(), "nothing is written for {prompt:?}");
    };
    fails("a cat with a compter", "unknown word 'compter'");
    fails("a cat with a compter", "closest: computer");
    fails(
        "a cat and a dog and a tree and",
        "this model reads at most 8",
    );
    fails("a cat above", "a relation with one noun");
    fails("a with a", "where a noun belongs");
    let o = diffuse(&[
        "generate",
        "--model",
        "shapes32",
        "--prompt",
        "a red circle",
        "--attention-maps",
        "--out",
        s(&out),
    ]);
    assert_fails_with(
        &o,
        "--attention-maps needs a text model with cross-attention",
    );
    let o = generate(&model, "a cat", &out, &["--attention-steps", "3"]);
    assert_fails_with(&o, "--attention-maps");
}

#[test]
fn broken_text_model_files_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let model = text_model(dir.path());
    let dev = candle_core::Device::Cpu;
    let (meta, tensors): (ModelMeta, _) =
        safetensors::load_with_meta(&model, MODEL_KEY, &dev).unwrap();
    let write = |name: &str, change: &dyn Fn(&mut ModelMeta)| {
        let mut m = meta.clone();
        change(&mut m);
        let path = dir.path().join(name);
        safetensors::save_with_meta(&path, &tensors, MODEL_KEY, &m).unwrap();
        path
    };
    let out = dir.path().join("out");
    let no_pad = write("no-pad.safetensors", &|m| {
        m.unet.text.as_mut().unwrap().vocab.remove(0);
    });
    assert_fails_with(
        &generate(&no_pad, "a cat", &out, &[]),
        "the vocabulary must start with '<pad>'",
    );
    let longer = write("more-words.safetensors", &|m| {
        m.unet.text.as_mut().unwrap().vocab.push("zebra".into());
    });
    assert_fails_with(
        &generate(&longer, "a cat", &out, &[]),
        "weights do not match the config",
    );
    let no_text = write("no-text.safetensors", &|m| m.unet.text = None);
    assert_fails_with(
        &generate(&no_text, "a cat", &out, &[]),
        "cross-attention needs a text encoder",
    );
    assert!(!out.exists());
}

#[test]
fn eval_on_a_text_model_covers_every_group_and_grids_one() {
    let dir = tempfile::tempdir().unwrap();
    let model = text_model(dir.path());
    // Two sampling steps, one sample per prompt, the grid at `grid`, with `extra` flags.
    let eval = |grid: &Path, extra: &[&str]| {
        let mut a = vec!["eval", "--model", s(&model), "--samples-per-prompt", "1"];
        a.extend(["--steps", "2", "--grid", s(grid), "--quiet"]);
        a.extend_from_slice(extra);
        let o = diffuse(&a);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o
    };
    let grid = dir.path().join("held-out.png");
    let o = eval(&grid, &["--grid-prompts", "held-out", "--json"]);
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // The table always covers the whole set, whatever the grid shows.
    assert_eq!(r["single"]["samples"], 24);
    assert_eq!(r["seen_pairs"]["samples"], 48);
    assert_eq!(r["held_out_pairs"]["samples"], 28);
    assert_eq!(r["cat_with_computer"]["samples"], 1);
    assert_eq!(r["prompts"].as_array().unwrap().len(), 100);
    // The grid: a title band and one row per held-out prompt (16-px samples here).
    let img = image::open(&grid).unwrap().to_rgb8();
    let rows = |h: u32| (h as f64 / 16.0) as usize;
    assert!(
        (28..=60).contains(&rows(img.height())),
        "{}x{}",
        img.width(),
        img.height()
    );
    let all = dir.path().join("all.png");
    eval(&all, &[]);
    let full = image::open(&all).unwrap().to_rgb8();
    assert!(full.height() > 3 * img.height(), "100 rows against 28");
    // Refused: an unknown group, the option without --grid, and a model without text.
    let bad = |extra: &[&str], needle: &str| {
        let mut a = vec!["eval", "--model", "shapes32", "--samples-per-prompt", "1"];
        a.extend_from_slice(extra);
        assert_fails_with(&diffuse(&a), needle);
    };
    bad(
        &["--grid", "g.png", "--grid-prompts", "pets"],
        "unknown grid prompts 'pets'",
    );
    bad(&["--grid-prompts", "seen"], "--grid");
    bad(
        &[
            "--grid",
            s(&dir.path().join("s.png")),
            "--grid-prompts",
            "seen",
        ],
        "--grid-prompts picks prompt groups of a text model",
    );
}
