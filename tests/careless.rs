//! Careless input handled as a user expects, each case with the real binary: prompts typed as
//! sentences, negative numbers that name their flag, long words clipped, and settings that
//! would be ignored or quietly changed refused with the reason.

mod common;

use common::{assert_fails_with, diffuse, run_json, s};

#[test]
fn a_prompt_typed_as_a_sentence_is_read_as_its_words() {
    let dir = tempfile::tempdir().unwrap();
    let run = |prompt: &str, name: &str| {
        let out = dir.path().join(name);
        let o = diffuse(&[
            "-q",
            "generate",
            "--prompt",
            prompt,
            "--num-images",
            "1",
            "--steps",
            "2",
            "--frames",
            "2",
            "--seed",
            "4",
            "--out",
            s(&out),
        ]);
        assert!(
            o.status.success(),
            "{prompt}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        out
    };
    let typed = run("\"A cat with a computer!\"", "typed");
    let plain = run("a cat with a computer", "plain");
    let report = run_json(&typed);
    assert_eq!(report["prompt"], "\"A cat with a computer!\"");
    assert_eq!(report["prompt_normalized"], "a cat with a computer");
    assert_eq!(report["condition_ids"], run_json(&plain)["condition_ids"]);
    let bytes = |d: &std::path::Path| std::fs::read(d.join("sample_00.png")).unwrap();
    assert_eq!(bytes(&typed), bytes(&plain));
    // Slot models too.
    let o = diffuse(&[
        "-q",
        "generate",
        "--model",
        "shapes32",
        "--prompt",
        "A red circle.",
        "--num-images",
        "1",
        "--steps",
        "2",
        "--frames",
        "2",
        "--out",
        s(&dir.path().join("shapes")),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn negative_numbers_name_their_flag() {
    for (args, flag) in [
        (
            vec!["generate", "--prompt", "a cat", "--seed", "-1"],
            "'--seed <SEED>'",
        ),
        (
            vec!["generate", "--prompt", "a cat", "--steps", "-5"],
            "'--steps <STEPS>'",
        ),
        (
            vec!["generate", "--prompt", "a cat", "--num-images", "-1"],
            "'--num-images",
        ),
        (vec!["--threads", "-1", "models"], "'--threads <THREADS>'"),
        (
            vec!["data", "emoji", "--count", "-1", "--out", "x"],
            "'--count <COUNT>'",
        ),
        (
            vec!["train", "--out", "x.safetensors", "--lr", "-1"],
            "--lr -1",
        ),
    ] {
        let o = diffuse(&args);
        assert_fails_with(&o, flag);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn a_long_unknown_word_is_clipped() {
    let word = "z".repeat(100_000);
    let o = diffuse(&["generate", "--prompt", &word, "--out", "never"]);
    assert_fails_with(&o, "unknown word");
    assert!(o.stderr.len() < 2_000, "{} bytes of error", o.stderr.len());
    assert!(!std::path::Path::new("never").exists());
}

#[test]
fn settings_that_would_be_ignored_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    for sampler in ["ddpm", "dpm++2m"] {
        let o = diffuse(&[
            "generate",
            "--model",
            "shapes32",
            "--prompt",
            "red",
            "--sampler",
            sampler,
            "--eta",
            "0.5",
            "--out",
            s(&out),
        ]);
        assert_fails_with(&o, "--eta 0.5 applies to --sampler ddim");
    }
    let scene = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/scene.png");
    for strength in ["0", "0.01"] {
        let o = diffuse(&[
            "img2img",
            "--model",
            "shapes32",
            "--image",
            s(&scene),
            "--prompt",
            "red",
            "--strength",
            strength,
            "--out",
            s(&out),
        ]);
        assert_fails_with(&o, &format!("--strength {strength} leaves no step to run"));
    }
    let o = diffuse(&[
        "generate",
        "--prompt",
        "a cat",
        "--guidance",
        "1e40",
        "--out",
        s(&out),
    ]);
    assert_fails_with(&o, "must be a number in 0..=50");
    let txt = dir.path().join("cmp.txt");
    let o = diffuse(&[
        "compare",
        "--model",
        "shapes32",
        "--prompt",
        "red",
        "--seed",
        "1,2",
        "--out",
        s(&txt),
    ]);
    assert_fails_with(&o, "compare writes a PNG");
    assert!(!txt.exists() && !out.exists());
}
