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
