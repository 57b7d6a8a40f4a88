//! Property tests of the parsers (issue 28, part 10): the prompt parser and tokenizer, the
//! model-file header reader, the noise-file and picture (mask) loaders, and the HTTP API's
//! JSON bodies. On any input none may panic, and each answers a one-line error or a value.
//!
//! Each property runs `DIFFUSE_PROPTEST_CASES` cases (default 256); a longer search:
//! `DIFFUSE_PROPTEST_CASES=5000 cargo test --release --test properties`.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::Device;
use proptest::prelude::*;

use common::server::Server;
use diffuse::text::tokenizer;
use diffuse::unet::UNetConfig;

fn config() -> ProptestConfig {
    let cases = std::env::var("DIFFUSE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The UNet configs of the shipped text model and slot model.
fn configs() -> &'static [UNetConfig; 2] {
    static C: OnceLock<[UNetConfig; 2]> = OnceLock::new();
    C.get_or_init(|| {
        ["models/emoji64.safetensors", "models/shapes32.safetensors"].map(|f| {
            let m = diffuse::model::file::load_file(&repo(f), &Device::Cpu).unwrap();
            m.meta.unet.clone()
        })
    })
}

/// An error as a user reads it: one line, of bounded length.
fn one_line(e: &impl std::fmt::Display) -> Result<(), TestCaseError> {
    let msg = e.to_string();
    prop_assert!(!msg.contains('\n'), "a two-line error: {msg:?}");
    prop_assert!(
        msg.chars().count() <= 600,
        "an error of {} chars",
        msg.chars().count()
    );
    Ok(())
}

/// Prompts as people type them: the models' words, other words, punctuation and spaces.
fn prompt() -> impl Strategy<Value = String> {
    let word = prop_oneof![
        prop::sample::select(vec![
            "a", "the", "cat", "computer", "with", "and", "above", "below", "left", "of", "right",
            "red", "circle", "blue", "star", "dog", "tree", "an",
        ])
        .prop_map(String::from),
        "[a-zA-Z]{1,12}",
        "[.!?;:,\"'“”‘’ \t\n]{1,3}",
        any::<String>(),
    ];
    prop::collection::vec(word, 0..12).prop_map(|w| w.join(" "))
}

/// `bytes` with `flips` (position, xor) applied and cut to `keep` bytes.
fn mutate(mut bytes: Vec<u8>, flips: &[(usize, u8)], keep: usize) -> Vec<u8> {
    let n = bytes.len();
    for &(p, x) in flips {
        bytes[p % n] ^= x;
    }
    bytes.truncate(keep.min(n));
    bytes
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn prompts_give_ids_or_a_one_line_error(text in prompt()) {
        for config in configs() {
            match diffuse::prompt::encode(&text, config) {
                // The prompt the model reads gives the same ids as the one typed.
                Ok(ids) => {
                    let normal = tokenizer::normalize(&text);
                    prop_assert_eq!(diffuse::prompt::encode(&normal, config).ok(), Some(ids));
                }
                Err(e) => one_line(&e)?,
            }
        }
    }

    #[test]
    fn the_tokenizer_keeps_words_and_drops_what_carries_no_meaning(text in any::<String>()) {
        let words = tokenizer::words(&text);
        for w in &words {
            prop_assert!(!w.is_empty());
            prop_assert!(!w.contains(|c: char| c.is_whitespace() || c == ','));
            prop_assert!(!w.contains(tokenizer::IGNORED_PUNCTUATION));
        }
        let normal = tokenizer::normalize(&text);
        prop_assert_eq!(tokenizer::normalize(&normal), normal.clone());
        prop_assert_eq!(tokenizer::words(&normal), words);
    }

    #[test]
    fn a_damaged_model_file_is_refused_in_one_line(
        flips in prop::collection::vec((0usize..4096, 1u8..=255), 0..6),
        keep in prop_oneof![Just(usize::MAX), 0usize..200_000],
        header_len in any::<u64>(),
        replace_len in any::<bool>(),
    ) {
        static SHAPES: OnceLock<Vec<u8>> = OnceLock::new();
        let good = SHAPES.get_or_init(|| std::fs::read(repo("models/shapes32.safetensors")).unwrap());
        let mut bytes = mutate(good.clone(), &flips, keep);
        if replace_len && bytes.len() >= 8 {
            bytes[..8].copy_from_slice(&header_len.to_le_bytes());
        }
        if let Err(e) = diffuse::model::file::load_bytes("the test model", &bytes, &Device::Cpu) {
            one_line(&e)?;
        }
    }

    #[test]
    fn a_damaged_noise_file_is_refused_in_one_line(
        flips in prop::collection::vec((0usize..2048, 1u8..=255), 0..6),
        keep in prop_oneof![Just(usize::MAX), 0usize..20_000],
        junk in prop::collection::vec(any::<u8>(), 0..64),
        use_junk in any::<bool>(),
    ) {
        static NOISE: OnceLock<Vec<u8>> = OnceLock::new();
        let good = NOISE.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("noise.safetensors");
            let z = candle_core::Tensor::ones((1, 3, 32, 32), candle_core::DType::F32, &Device::Cpu).unwrap();
            candle_core::safetensors::save(&[("noise".to_string(), z)].into(), &path).unwrap();
            std::fs::read(&path).unwrap()
        });
        let bytes = if use_junk { junk } else { mutate(good.clone(), &flips, keep) };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("noise.safetensors");
        std::fs::write(&path, &bytes).unwrap();
        let loaded = diffuse::jobs::noise_file::load_noise(&path, [3, 32, 32], 4, &Device::Cpu);
        match loaded {
            Ok((t, _)) => prop_assert_eq!(&t.dims()[1..], &[3, 32, 32]),
            Err(e) => one_line(&e)?,
        }
    }

    #[test]
    fn a_damaged_picture_or_mask_is_refused_in_one_line(
        flips in prop::collection::vec((0usize..4096, 1u8..=255), 0..6),
        keep in prop_oneof![Just(usize::MAX), 0usize..5_000],
        size in (any::<u32>(), any::<u32>()),
        set_size in any::<bool>(),
    ) {
        static MASK: OnceLock<Vec<u8>> = OnceLock::new();
        let good = MASK.get_or_init(|| std::fs::read(repo("assets/scene-sun-mask.png")).unwrap());
        let mut bytes = mutate(good.clone(), &flips, keep);
        // The IHDR width and height (bytes 16..24) claim any size.
        if set_size && bytes.len() >= 24 {
            bytes[16..20].copy_from_slice(&size.0.to_be_bytes());
            bytes[20..24].copy_from_slice(&size.1.to_be_bytes());
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mask.png");
        std::fs::write(&path, &bytes).unwrap();
        match diffuse::io::image::load_square(&path, 32, &Device::Cpu) {
            Ok(img) => prop_assert_eq!(img.x0.dims(), &[3, 32, 32]),
            Err(e) => one_line(&e)?,
        }
    }
}

/// JSON values of every kind, nested a little, with the API's own field names among the keys.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{json, Value};
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "[a-z ]{0,20}".prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    let key = prop_oneof![
        prop::sample::select(vec![
            "prompt",
            "negative_prompt",
            "sampler",
            "steps",
            "guidance",
            "seed",
            "num_images",
            "compare",
            "attention",
            "t",
            "schedule",
            "image",
            "top",
            "id",
        ])
        .prop_map(String::from),
        "[a-z_]{1,10}",
    ];
    leaf.prop_recursive(3, 24, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A request body: a JSON value, or raw bytes read as text.
fn api_body() -> impl Strategy<Value = (String, &'static str)> {
    let text = prop_oneof![
        json_value().prop_map(|v| v.to_string()),
        prop::collection::vec(any::<u8>(), 0..64)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ];
    let path = prop::sample::select(vec!["/api/generate", "/api/noise", "/api/nearest"]);
    (text, path)
}

#[test]
fn every_api_body_gets_a_json_answer_and_never_a_server_error() {
    // The server lives in this test, so it is stopped when the test ends.
    let server = Server::start(&["--model", "shapes32", "--queue", "2"]);
    let mut runner = proptest::test_runner::TestRunner::new(config());
    let result = runner.run(&api_body(), |(text, path)| {
        let resp = server.post(path, &text);
        let status = resp.status();
        // 501 and 503 are the nearest-scene search being off or still indexing; never 500.
        prop_assert!(
            status < 500 || [501, 503].contains(&status),
            "{path} {text:?}: status {status}"
        );
        let answer: serde_json::Value = resp.into_json().expect("a JSON answer");
        if status >= 400 {
            prop_assert!(answer["error"].is_string(), "{path} {text:?}: {answer}");
        }
        if (400..500).contains(&status) {
            prop_assert!(answer["field"].is_string(), "{path} {text:?}: {answer}");
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // The server is still there and answers.
    assert_eq!(server.get("/api/status").status(), 200);
}
