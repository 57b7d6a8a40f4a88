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
    assert_eq!(first["name"], "shapes32");
    assert_eq!(first["default"], true);
    assert_eq!(first["resolution"], 32);
    assert_eq!(first["bytes"], diffuse::model::SHAPES32.len());
    assert_eq!(first["vocabulary"][0][0], "colour");
    assert_eq!(first["vocabulary"][1][1].as_array().unwrap().len(), 6);
    let second = &list[1];
    assert_eq!(second["name"], "emoji64");
    assert_eq!(second["default"], false);
    assert_eq!(second["resolution"], 64);
    assert_eq!(second["prompts"], "text");
    assert_eq!(second["bytes"], diffuse::model::EMOJI64.len());
    let words = second["vocabulary"][0][1].as_array().unwrap();
    assert!(words.contains(&serde_json::json!("computer")), "{words:?}");
    let text = String::from_utf8_lossy(&diffuse(&["models"]).stdout).to_string();
    assert!(
        text.contains("shapes32 (default)") && text.contains("circle, square, triangle"),
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
    let circle = "a red circle";
    assert_eq!(
        run("named", circle, &["--model", "shapes32"]),
        run("default", circle, &[])
    );
    // The text model by name draws what its file draws.
    let emoji =
        |name: &str, model: &str| run(name, "a cat", &["--num-images", "1", "--model", model]);
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/models/emoji64.safetensors");
    assert_eq!(emoji("emoji-named", "emoji64"), emoji("emoji-file", file));
    let o = diffuse(&[
        "generate",
        "--prompt",
        "a red circle",
        "--model",
        "shapes99",
    ]);
    common::assert_fails_with(&o, "shapes99");
}
