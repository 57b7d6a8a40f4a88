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
    let text = String::from_utf8_lossy(&diffuse(&["models"]).stdout).to_string();
    assert!(
        text.contains("shapes32 (default)") && text.contains("circle, square, triangle"),
        "{text}"
    );
}

#[test]
fn a_built_in_model_is_chosen_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let mut a = vec![
            "generate",
            "--prompt",
            "a red circle",
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
    assert_eq!(run("named", &["--model", "shapes32"]), run("default", &[]));
    let o = diffuse(&[
        "generate",
        "--prompt",
        "a red circle",
        "--model",
        "shapes99",
    ]);
    common::assert_fails_with(&o, "shapes99");
}
