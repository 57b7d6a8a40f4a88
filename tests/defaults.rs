//! Each sampling default is written once, in the library: `generate`, `compare` and `serve`
//! given only a prompt and a seed run with identical settings (run.json, compare's `--json`
//! report and the server's `start` event agree), and those settings are the library's.

mod common;

use common::server::{Events, Server};
use diffuse::defaults::SamplingDefaults;

/// The server's `start` event for `body`.
fn start_event(server: &Server, body: &str) -> serde_json::Value {
    let (status, json) = Server::json(server.post("/api/generate", body));
    assert_eq!(status, 200, "{json}");
    let mut events = Events::open(&server.url, json["id"].as_u64().unwrap());
    while let Some((name, data)) = events.next_event() {
        if name == "start" {
            return data;
        }
    }
    panic!("no start event");
}

#[test]
fn generate_compare_and_serve_run_with_the_same_defaults() {
    for model in ["emoji64", "shapes32"] {
        let prompt = if model == "emoji64" {
            "a cat"
        } else {
            "a red circle"
        };
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("gen");
        let o = common::diffuse(&[
            "-q",
            "generate",
            "--model",
            model,
            "--prompt",
            prompt,
            "--seed",
            "5",
            "--frames",
            "2",
            "--out",
            common::s(&out),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let generate = common::run_json(&out);

        let png = dir.path().join("cmp.png");
        let o = common::diffuse(&[
            "-q",
            "compare",
            "--model",
            model,
            "--prompt",
            prompt,
            "--seed",
            "5,6",
            "--out",
            common::s(&png),
            "--json",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let compare: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let column = &compare["columns"][0];

        let server = Server::start(&["--model", model]);
        let body = format!(r#"{{"prompt": "{prompt}", "seed": 5}}"#);
        let start = start_event(&server, &body);
        let spec = &start["spec"];

        let d = SamplingDefaults::LIBRARY;
        assert_eq!(generate["sampler"]["kind"], d.sampler.to_string().as_str());
        assert_eq!(generate["sampler"]["steps"], d.steps);
        assert_eq!(generate["sampler"]["thresholding"], d.thresholding);
        assert_eq!(generate["sampler"]["eta"], d.eta);
        assert_eq!(generate["guidance"], d.guidance);
        assert_eq!(generate["num_images"], d.num_images);
        assert_eq!(spec["num_images"], d.playground_images);
        // The whole sampler config, field by field, and the guidance and seed.
        assert_eq!(column["sampler"], generate["sampler"], "{model}: compare");
        assert_eq!(spec["sampler"], generate["sampler"], "{model}: serve");
        assert_eq!(column["guidance"], generate["guidance"]);
        assert_eq!(spec["variants"][0]["guidance"], generate["guidance"]);
        assert_eq!(column["seed"], 5);
        assert_eq!(spec["variants"][0]["seed"], 5);
        assert_eq!(start["timesteps"][0], generate["timesteps"]);
    }
}

#[test]
fn a_model_without_recorded_defaults_takes_the_librarys() {
    let device = candle_core::Device::Cpu;
    for name in ["emoji64", "shapes32"] {
        let b = diffuse::model::builtin(name).unwrap();
        let model = diffuse::model::load_builtin(b, &device).unwrap();
        assert_eq!(model.meta.sampling, None);
        assert_eq!(model.defaults(), SamplingDefaults::LIBRARY);
    }
}

#[test]
fn a_models_recorded_defaults_come_before_the_librarys() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("measured.safetensors");
    let b = diffuse::model::builtin("shapes32").unwrap();
    let cpu = candle_core::Device::Cpu;
    let mut meta = diffuse::model::load_builtin(b, &cpu).unwrap().meta;
    meta.sampling = Some(SamplingDefaults {
        sampler: diffuse::sampler::SamplerKind::Ddim,
        steps: 7,
        guidance: 2.0,
        num_images: 2,
        ..SamplingDefaults::LIBRARY
    });
    let weights = diffuse::model::weights(Some(std::path::Path::new("shapes32"))).unwrap();
    diffuse::io::safetensors::save_with_meta(&file, &weights, diffuse::model::MODEL_KEY, &meta)
        .unwrap();
    let out = dir.path().join("gen");
    let o = common::diffuse(&[
        "-q",
        "generate",
        "--model",
        common::s(&file),
        "--prompt",
        "a red circle",
        "--seed",
        "1",
        "--frames",
        "2",
        "--out",
        common::s(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report = common::run_json(&out);
    assert_eq!(report["sampler"]["kind"], "ddim");
    assert_eq!(report["sampler"]["steps"], 7);
    assert_eq!(report["guidance"], 2.0);
    assert_eq!(report["num_images"], 2);
    // A flag still wins over the model's default.
    let o = common::diffuse(&[
        "-q",
        "generate",
        "--model",
        common::s(&file),
        "--prompt",
        "a red circle",
        "--steps",
        "3",
        "--seed",
        "1",
        "--frames",
        "2",
        "--force",
        "--out",
        common::s(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(common::run_json(&out)["sampler"]["steps"], 3);
}
