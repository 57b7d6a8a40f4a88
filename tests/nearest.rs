//! "Is it new?": the regenerated training stream is the trainer's own, a training scene put in
//! as the query is found at distance 0 at its own index, and bad inputs are one-line errors.

mod common;

use std::path::{Path, PathBuf};

use candle_core::Device;
use common::{assert_fails_with, diffuse, s};
use diffuse::io::image::push_chw;
use diffuse::io::safetensors;
use diffuse::model::{ModelMeta, MODEL_KEY};
use diffuse::nearest::{distance, search, DataStream, StreamData};
use diffuse::train::{DataSource, TrainConfig, Trainer};

/// A tiny emoji text model's trainer (64 px, as the scenes) with batch `batch`.
fn emoji_trainer(batch: usize) -> Trainer {
    let unet = diffuse::unet::UNetConfig {
        image_size: 64,
        cross_attention_resolutions: Vec::new(),
        ..common::tiny_text_unet()
    };
    let config = TrainConfig {
        data: DataSource::Emoji,
        unet,
        batch_size: batch,
        ..Default::default()
    };
    Trainer::new(config, &Device::Cpu).unwrap()
}

/// The stream's scenes `start..start+count` as the trainer's tensor layout.
fn stream_tensor(stream: &DataStream, start: u64, count: usize) -> Vec<f32> {
    let mut x = Vec::new();
    for scene in stream.pictures(start, count) {
        push_chw(&mut x, &scene.picture);
    }
    x
}

#[test]
fn the_regenerated_stream_is_the_trainers_own() {
    let mut t = emoji_trainer(3);
    for step in [0u64, 1, 7] {
        t.step = step;
        let stream = t.data_stream().unwrap();
        assert_eq!(
            (
                stream.data,
                stream.data_seed,
                stream.batch_size,
                stream.steps
            ),
            (StreamData::Emoji, 1, 3, step)
        );
        let (x, _) = t.pictures().unwrap(); // what the loader feeds step `step`
        let loader = common::to_vec(&x);
        assert_eq!(loader, stream_tensor(&stream, step * 3, 3), "step {step}");
    }
    // The shapes stream too.
    let config = TrainConfig {
        unet: common::tiny_unet(),
        batch_size: 5,
        ..Default::default()
    };
    let mut t = Trainer::new(config, &Device::Cpu).unwrap();
    t.step = 4;
    let stream = t.data_stream().unwrap();
    assert_eq!(stream.data, StreamData::Shapes);
    let (x, _) = t.pictures().unwrap();
    assert_eq!(common::to_vec(&x), stream_tensor(&stream, 20, 5));
}

/// A model file of a run that took `steps` steps of `batch` emoji scenes.
fn emoji_model(dir: &Path, steps: u64, batch: usize) -> PathBuf {
    let mut t = emoji_trainer(batch);
    t.step = steps;
    let path = dir.join("model.safetensors");
    t.save_model(&path).unwrap();
    path
}

#[test]
fn a_training_scene_is_found_at_distance_zero_at_its_own_index() {
    let dir = tempfile::tempdir().unwrap();
    let model = emoji_model(dir.path(), 50, 4); // 200 scenes
    let scenes = dir.path().join("scenes");
    let o = diffuse(&[
        "-q",
        "data",
        "emoji",
        "--count",
        "124",
        "--seed",
        "1",
        "--out",
        s(&scenes),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = dir.path().join("nearest.png");
    let query = scenes.join("000123.png");
    let o = diffuse(&[
        "nearest",
        "--model",
        s(&model),
        "--image",
        s(&query),
        "--top",
        "3",
        "--out",
        s(&out),
        "--json",
        "--prompt",
        "a cat with a computer",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["searched"], 200);
    let first = &r["neighbours"][0];
    assert_eq!(
        (first["index"].as_u64(), first["step"].as_u64()),
        (Some(123), Some(30))
    );
    assert_eq!(first["distance"].as_f64(), Some(0.0));
    let d1 = r["neighbours"][1]["distance"].as_f64().unwrap();
    assert!(d1 > 0.0, "the next neighbour is another picture");
    assert_eq!(r["neighbours"].as_array().unwrap().len(), 3);
    let caption = std::fs::read_to_string(scenes.join("captions.jsonl")).unwrap();
    let line = caption.lines().nth(123).unwrap();
    let want = first["caption"].as_str().unwrap();
    assert!(line.contains(&format!("\"{want}\"")), "{line} vs {want}");
    let held = r["held_out"].as_str().unwrap();
    assert!(
        held.contains("held-out pair: no training scene holds both"),
        "{held}"
    );
    let img = image::open(&out).unwrap();
    assert!(
        img.width() > 4 * 64,
        "the query and its 3 neighbours side by side"
    );
    // A scene past the last step is not in the stream: it is not found at distance 0.
    let later = scenes.join("000123.png");
    let short = emoji_model(dir.path(), 30, 4); // 120 scenes: index 123 was never trained on
    let o = diffuse(&[
        "nearest",
        "--model",
        s(&short),
        "--image",
        s(&later),
        "--out",
        s(&out),
        "--force",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(r["neighbours"][0]["distance"].as_f64().unwrap() > 0.0);
}

#[test]
fn many_queries_share_one_pass_with_exact_distances() {
    let stream = DataStream {
        data: StreamData::Shapes,
        data_seed: 3,
        batch_size: 8,
        steps: 4,
    };
    let queries: Vec<_> = [5u64, 17]
        .iter()
        .map(|&i| stream.scene(i).picture)
        .collect();
    let found = search(&stream, &queries, 2, |_| {}).unwrap();
    for (q, (want, top)) in [5u64, 17].iter().zip(&found).enumerate() {
        assert_eq!((top[0].index, top[0].distance), (*want, 0.0), "query {q}");
        let other = stream.scene(top[1].index).picture;
        assert_eq!(
            top[1].distance,
            distance(queries[q].as_raw(), other.as_raw())
        );
    }
    // The pruned search finds what brute force finds, for queries that are no training scene.
    let others: Vec<_> = (0..3)
        .map(|i| {
            DataStream {
                data_seed: 9,
                ..stream
            }
            .scene(i)
            .picture
        })
        .collect();
    let found = search(&stream, &others, 3, |_| {}).unwrap();
    for (q, top) in others.iter().zip(&found) {
        let mut all: Vec<(f64, u64)> = (0..stream.len())
            .map(|i| (distance(q.as_raw(), stream.scene(i).picture.as_raw()), i))
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let got: Vec<(f64, u64)> = top.iter().map(|n| (n.distance, n.index)).collect();
        assert_eq!(got, all[..3].to_vec());
    }
    assert_eq!(distance(&[0, 255], &[255, 0]), 1.0);
    assert_eq!(distance(&[10, 10], &[10, 10]), 0.0);
}

#[test]
fn bad_nearest_inputs_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let model = emoji_model(dir.path(), 2, 2);
    let out = dir.path().join("n.png");
    let run = |extra: &[&str]| {
        let mut a = vec!["nearest", "--model", s(&model), "--out", s(&out)];
        a.extend_from_slice(extra);
        diffuse(&a)
    };
    assert_fails_with(&run(&["--image", common::SCENE, "--top", "0"]), "--top 0");
    assert_fails_with(&run(&["--image", common::SCENE, "--top", "65"]), "--top 65");
    assert_fails_with(&run(&["--image", "no-such.png"]), "no-such.png");
    // A picture of another size is resized, as img2img does.
    let o = run(&["--image", common::SCENE]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_fails_with(
        &run(&["--image", common::SCENE]),
        "already exists (use --force",
    );
    assert_fails_with(
        &run(&["--image", common::SCENE, "--seed", "3"]),
        "--copy-rate",
    );
    assert_fails_with(&run(&["--copy-rate", "1"]), "--copy-rate 1");
    let jpg = dir.path().join("n.jpg");
    let o = diffuse(&[
        "nearest",
        "--model",
        s(&model),
        "--image",
        common::SCENE,
        "--out",
        s(&jpg),
    ]);
    assert_fails_with(&o, "must name a .png file");
    // A model that records no training stream.
    let t = emoji_trainer(1);
    let meta = ModelMeta {
        data: None,
        ..diffuse::model::load(Some(&model), &Device::Cpu)
            .unwrap()
            .meta
    };
    let bare = dir.path().join("bare.safetensors");
    safetensors::save_with_meta(&bare, &t.ema, MODEL_KEY, &meta).unwrap();
    let o = diffuse(&[
        "nearest",
        "--model",
        s(&bare),
        "--image",
        common::SCENE,
        "--out",
        s(&out),
        "--force",
    ]);
    assert_fails_with(&o, "records no procedural training stream");
}

#[test]
fn the_copy_rate_compares_samples_with_fresh_scenes() {
    let dir = tempfile::tempdir().unwrap();
    let model = emoji_model(dir.path(), 30, 4);
    let plot = dir.path().join("copy-rate.png");
    let o = diffuse(&[
        "nearest",
        "--model",
        s(&model),
        "--copy-rate",
        "4",
        "--out",
        s(&plot),
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let fresh: Vec<f64> = serde_json::from_value(r["fresh_distances"].clone()).unwrap();
    let samples: Vec<f64> = serde_json::from_value(r["sample_distances"].clone()).unwrap();
    assert_eq!((fresh.len(), samples.len()), (4, 4));
    // The threshold is the 1st percentile (nearest rank) of the fresh distances: their minimum.
    let min = fresh.iter().cloned().fold(f64::INFINITY, f64::min);
    assert_eq!(r["threshold"].as_f64(), Some(min));
    let copies = samples.iter().filter(|&&d| d < min).count();
    assert_eq!(r["copies"].as_u64(), Some(copies as u64));
    assert_eq!(r["copy_rate"].as_f64(), Some(copies as f64 / 4.0));
    assert_eq!(r["fresh_seed"].as_u64(), Some(1 + 1_000_003));
    assert!(plot.is_file());
}

#[test]
fn generate_nearest_adds_each_samples_neighbours() {
    let dir = tempfile::tempdir().unwrap();
    let model = emoji_model(dir.path(), 10, 4);
    let out = dir.path().join("gen");
    let gen = |out: &Path, extra: &[&str]| {
        let mut a = vec![
            "-q",
            "generate",
            "--model",
            s(&model),
            "--prompt",
            "a dog",
            "--steps",
            "2",
            "--num-images",
            "2",
            "--seed",
            "1",
            "--out",
            s(out),
        ];
        a.extend_from_slice(extra);
        diffuse(&a)
    };
    let o = gen(&out, &["--nearest", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = common::run_json(&out);
    let rows = r["nearest"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        let row = row.as_array().unwrap();
        assert_eq!(row.len(), 2);
        assert!(row[0]["distance"].as_f64().unwrap() <= row[1]["distance"].as_f64().unwrap());
        assert!(row[0]["index"].as_u64().unwrap() < 40);
    }
    assert!(out.join("nearest.png").is_file());
    let page = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(page.contains("<img src=\"nearest.png\""));
    // Refused before anything is written.
    let bad = dir.path().join("bad");
    assert_fails_with(&gen(&bad, &["--nearest", "0"]), "--nearest 0");
    assert!(!bad.exists());
}

#[test]
fn the_playground_answers_is_it_new_from_its_start_up_index() {
    use common::server::Server;
    use diffuse::nearest::index::Index;
    let dir = tempfile::tempdir().unwrap();
    let model = emoji_model(dir.path(), 10, 4); // 40 scenes
    let stream = diffuse::model::load(Some(&model), &Device::Cpu)
        .unwrap()
        .meta
        .data
        .unwrap();
    // The index answers exactly what the full search answers.
    let index = Index::build(stream, &std::sync::atomic::AtomicU64::new(0));
    let other = DataStream {
        data_seed: 5,
        ..stream
    }
    .scene(0)
    .picture;
    let full = search(&stream, std::slice::from_ref(&other), 3, |_| {})
        .unwrap()
        .remove(0);
    let quick = index.search(&other, 3).unwrap();
    let pairs = |v: &[diffuse::nearest::Neighbour]| -> Vec<(u64, f64)> {
        v.iter().map(|n| (n.index, n.distance)).collect()
    };
    assert_eq!(pairs(&quick), pairs(&full));

    let server = Server::start_indexed(&["--model", s(&model)]);
    let (_, info) = Server::json(server.get("/api/model"));
    assert_eq!(info["nearest"], true);
    let t0 = std::time::Instant::now();
    loop {
        let (_, st) = Server::json(server.get("/api/status"));
        assert_eq!(st["nearest_index"]["total"], 40);
        if st["nearest_index"]["ready"] == true {
            break;
        }
        assert!(
            t0.elapsed().as_secs() < 60,
            "the index of 40 scenes is not built: {st}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut png = Vec::new();
    let scene = stream.scene(7).picture;
    scene
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    use base64::Engine as _;
    let url = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&png)
    );
    let body = serde_json::json!({ "image": url, "top": 2 }).to_string();
    let (code, r) = Server::json(server.post("/api/nearest", &body));
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["searched"], 40);
    assert_eq!(
        (
            r["neighbours"][0]["index"].as_u64(),
            r["neighbours"][0]["distance"].as_f64()
        ),
        (Some(7), Some(0.0))
    );
    assert!(r["neighbours"][0]["picture"]
        .as_str()
        .unwrap()
        .starts_with("data:image/png;base64,"));
    let (code, r) = Server::json(server.post(
        "/api/nearest",
        &serde_json::json!({ "image": url, "top": 0 }).to_string(),
    ));
    assert_eq!((code, r["field"].as_str()), (400, Some("top")));
    drop(server);

    let off = Server::start(&["--model", s(&model)]);
    let (_, info) = Server::json(off.get("/api/model"));
    assert_eq!(info["nearest"], false);
    let (code, r) = Server::json(off.post("/api/nearest", &body));
    assert_eq!(code, 501);
    assert!(
        r["error"].as_str().unwrap().contains("--no-nearest-index"),
        "{r}"
    );
}

#[test]
fn a_folder_model_searches_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pics");
    for (class, rgb) in [("apples", [200u8, 30, 30]), ("leaves", [30, 160, 40])] {
        std::fs::create_dir_all(data.join(class)).unwrap();
        for i in 0..3u8 {
            let img = image::RgbImage::from_fn(32, 32, |x, _| match x < 8 * i as u32 {
                true => image::Rgb([255, 255, 255]),
                false => image::Rgb(rgb),
            });
            img.save(data.join(class).join(format!("{i}.png"))).unwrap();
        }
    }
    let model = dir.path().join("m.safetensors");
    let run = dir.path().join("run");
    let train = [
        "train",
        "--data",
        s(&data),
        "--out",
        s(&model),
        "--run-dir",
        s(&run),
        "--steps",
        "1",
        "--batch-size",
        "2",
        "--base-channels",
        "8",
        "--checkpoint-every",
        "1",
        "--preview-steps",
        "2",
        "--quiet",
    ];
    let o = diffuse(&train);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let query = data.join("leaves/1.png");
    let out = dir.path().join("near.png");
    let look = |extra: &[&str]| {
        let mut a = vec!["nearest", "--model", s(&model), "--image", s(&query)];
        a.extend(["--out", s(&out), "--force", "--quiet"]);
        a.extend_from_slice(extra);
        diffuse(&a)
    };
    // The model records no procedural stream: the error says to give the folder.
    common::assert_fails_with(
        &look(&[]),
        "`diffuse nearest --data FOLDER` searches the folder",
    );
    let o = look(&["--data", s(&data), "--top", "2", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["searched"], 6);
    assert_eq!(r["folder"], s(&data));
    let first = &r["neighbours"][0];
    assert_eq!(first["distance"], 0.0);
    assert_eq!(first["caption"], "leaves (1.png)");
    assert!(
        first.get("step").is_none(),
        "a folder picture has no step: {first}"
    );
    assert!(r["neighbours"][1]["distance"].as_f64().unwrap() > 0.0);
    assert!(image::open(&out).is_ok());
}
