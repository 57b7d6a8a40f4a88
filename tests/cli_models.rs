//! `diffuse models` and `--model NAME`: the built-in models are listed with their words,
//! resolution and size, and chosen by name.

mod common;
use common::{diffuse, s};

#[test]
fn models_lists_the_built_in_models() {
    let o = diffuse(&["models", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let first = &list[0];
    assert_eq!(first["name"], "emoji64");
    assert_eq!(first["default"], true);
    assert_eq!(first["resolution"], 64);
    assert_eq!(first["prompts"], "text");
    assert_eq!(first["bytes"], diffuse::model::EMOJI64.len());
    let words = first["vocabulary"][0][1].as_array().unwrap();
    assert!(words.contains(&serde_json::json!("computer")), "{words:?}");
    let second = &list[1];
    assert_eq!(second["name"], "shapes32");
    assert_eq!(second["default"], false);
    assert_eq!(second["resolution"], 32);
    assert_eq!(second["bytes"], diffuse::model::SHAPES32.len());
    assert_eq!(second["vocabulary"][0][0], "colour");
    assert_eq!(second["vocabulary"][1][1].as_array().unwrap().len(), 6);
    let text = String::from_utf8_lossy(&diffuse(&["models"]).stdout).to_string();
    assert!(
        text.contains("emoji64 (default)") && text.contains("circle, square, triangle"),
        "{text}"
    );
}

#[test]
fn a_built_in_model_is_chosen_by_name() {
    let dir = tempfile::tempdir().unwrap();
    // Two steps of `prompt`, seed 4, into `dir/name`, with `extra` flags: sample 0's bytes.
    let run = |name: &str, prompt: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let mut a = vec![
            "generate",
            "--prompt",
            prompt,
            "--steps",
            "2",
            "--seed",
            "4",
            "--frames",
            "2",
            "--out",
            s(&out),
            "--quiet",
        ];
        a.extend_from_slice(extra);
        let o = diffuse(&a);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::read(out.join("sample_00.png")).unwrap()
    };
    // The default is emoji64, and by name it draws what its file draws.
    let emoji = |name: &str, extra: &[&str]| {
        let mut a = vec!["--num-images", "1"];
        a.extend_from_slice(extra);
        run(name, "a cat", &a)
    };
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/models/emoji64.safetensors");
    let by_file = emoji("emoji-file", &["--model", file]);
    assert_eq!(emoji("emoji-named", &["--model", "emoji64"]), by_file);
    assert_eq!(emoji("emoji-default", &[]), by_file);
    // shapes32 is chosen by name and draws what its file draws; it is not the default.
    let circle = "a red circle";
    let shapes_file = concat!(env!("CARGO_MANIFEST_DIR"), "/models/shapes32.safetensors");
    assert_eq!(
        run("named", circle, &["--model", "shapes32"]),
        run("shapes-file", circle, &["--model", shapes_file])
    );
    let o = diffuse(&[
        "generate",
        "--prompt",
        circle,
        "--out",
        s(&dir.path().join("x")),
    ]);
    common::assert_fails_with(&o, "unknown word 'red'");
    let o = diffuse(&[
        "generate",
        "--prompt",
        "a red circle",
        "--model",
        "shapes99",
    ]);
    common::assert_fails_with(&o, "shapes99");
}
