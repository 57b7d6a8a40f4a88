//! Training: exact resume, learning on a fixed batch, checkpoint and model round trips,
//! dataset determinism, and the errors for bad settings and foreign files.

mod common;

use candle_core::Device;
use diffuse::data::shapes::{self, ShapeSpec};
use diffuse::io::safetensors;
use diffuse::model::{ModelMeta, MODEL_KEY};
use diffuse::train::{TrainConfig, Trainer};

fn tiny(steps: u64) -> TrainConfig {
    TrainConfig {
        unet: common::tiny_unet(),
        steps,
        batch_size: 4,
        warmup_steps: 2,
        ..Default::default()
    }
}

fn weights(t: &Trainer) -> Vec<(String, Vec<f32>)> {
    t.opt
        .state
        .iter()
        .map(|(n, v, _, _)| {
            (
                n.clone(),
                v.as_tensor().flatten_all().unwrap().to_vec1().unwrap(),
            )
        })
        .collect()
}

fn ema(t: &Trainer) -> Vec<f32> {
    let mut names: Vec<&String> = t.ema.keys().collect();
    names.sort();
    names
        .into_iter()
        .flat_map(|n| t.ema[n].flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect()
}

#[test]
fn resuming_gives_the_same_weights_as_one_run() {
    let dev = Device::Cpu;
    let k = 3;
    let mut straight = Trainer::new(tiny(2 * k), &dev).unwrap();
    for _ in 0..2 * k {
        straight.train_step().unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt.safetensors");
    let mut first = Trainer::new(tiny(2 * k), &dev).unwrap();
    for _ in 0..k {
        first.train_step().unwrap();
    }
    first.save_checkpoint(&ckpt, 1.5).unwrap();
    drop(first);
    let mut resumed = Trainer::resume(&ckpt, None, Default::default(), &dev).unwrap();
    assert_eq!(resumed.step, k);
    assert_eq!(resumed.elapsed_before_s, 1.5);
    for _ in 0..k {
        resumed.train_step().unwrap();
    }
    assert_eq!(weights(&straight), weights(&resumed));
    assert_eq!(ema(&straight), ema(&resumed));
}

#[test]
fn a_tiny_model_learns_a_fixed_batch() {
    // Same data every step (data_seed fixed, and the batch repeats because we rewind step).
    let mut t = Trainer::new(
        TrainConfig {
            lr: 3e-3,
            cond_drop: 0.0,
            slot_drop: 0.0,
            ..tiny(60)
        },
        &Device::Cpu,
    )
    .unwrap();
    let mut losses = Vec::new();
    for _ in 0..60 {
        t.step = 0; // the batch is a function of the step: keep it fixed
        losses.push(t.train_step().unwrap().loss);
    }
    let first: f32 = losses[..10].iter().sum::<f32>() / 10.0;
    let last: f32 = losses[50..].iter().sum::<f32>() / 10.0;
    assert!(last < 0.6 * first, "loss went from {first} to {last}");
}

#[test]
fn model_file_round_trips_with_its_config() {
    let dev = Device::Cpu;
    let mut t = Trainer::new(tiny(2), &dev).unwrap();
    t.train_step().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    t.save_model(&path).unwrap();
    let (meta, tensors): (ModelMeta, _) =
        safetensors::load_with_meta(&path, MODEL_KEY, &dev).unwrap();
    assert_eq!(meta.unet, t.config.unet);
    assert_eq!(meta.trained_steps, 1);
    let vb = candle_nn::VarBuilder::from_tensors(tensors, candle_core::DType::F32, &dev);
    let loaded = diffuse::unet::UNet::new(&meta.unet, vb).unwrap();
    let model = t.ema_model().unwrap();
    let x = diffuse::rng::randn(&mut diffuse::rng::rng(1), (2, 3, 32, 32), &dev).unwrap();
    let cond = diffuse::unet::cond_tensor(&[vec![0, 1], vec![6, 6]], &dev).unwrap();
    let a = common::to_vec(&model.forward(&x, &[10.0, 500.0], &cond).unwrap());
    let b = common::to_vec(&loaded.forward(&x, &[10.0, 500.0], &cond).unwrap());
    assert_eq!(a, b);
}

#[test]
fn bad_settings_and_foreign_files_are_rejected() {
    let dev = Device::Cpu;
    let err = |c: TrainConfig| Trainer::new(c, &dev).err().unwrap().to_string();
    assert!(err(TrainConfig {
        steps: 0,
        ..tiny(1)
    })
    .contains("--steps 0"));
    assert!(err(TrainConfig {
        batch_size: 0,
        ..tiny(1)
    })
    .contains("--batch-size 0"));

    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.safetensors");
    std::fs::write(&text, b"hello").unwrap();
    let e = Trainer::resume(&text, None, Default::default(), &dev)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("notes.safetensors") && e.contains("not a valid safetensors"),
        "{e}"
    );

    // A model file is not a checkpoint.
    let t = Trainer::new(tiny(1), &dev).unwrap();
    let model = dir.path().join("m.safetensors");
    t.save_model(&model).unwrap();
    let e = Trainer::resume(&model, None, Default::default(), &dev)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("no 'diffuse_checkpoint' metadata"), "{e}");

    // Truncated.
    let ckpt = dir.path().join("c.safetensors");
    t.save_checkpoint(&ckpt, 0.0).unwrap();
    let bytes = std::fs::read(&ckpt).unwrap();
    std::fs::write(&ckpt, &bytes[..bytes.len() / 2]).unwrap();
    let e = Trainer::resume(&ckpt, None, Default::default(), &dev)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("c.safetensors"), "{e}");
}

#[test]
fn shapes_are_deterministic_and_labelled_as_drawn() {
    let a = shapes::render_range(7, 100, 8);
    let b = shapes::render_range(7, 100, 8);
    for ((sa, ia), (sb, ib)) in a.iter().zip(&b) {
        assert_eq!(sa, sb);
        assert_eq!(ia.as_raw(), ib.as_raw());
    }
    let other = shapes::render_range(8, 100, 8);
    assert_ne!(a[0].1.as_raw(), other[0].1.as_raw());
    for i in 0..500 {
        let s = ShapeSpec::sample(3, i);
        assert!((12..=26).contains(&s.side));
        assert!(
            s.x0 >= 1 && s.x0 + s.side <= 31 && s.y0 >= 1 && s.y0 + s.side <= 31,
            "{s:?}"
        );
        assert!((10..=245).contains(&s.background));
    }
    // The box centre has the shape's colour for every shape but the star's hollow-free centre.
    let s = ShapeSpec {
        colour: 4,
        shape: 0,
        side: 20,
        x0: 6,
        y0: 6,
        background: 128,
    };
    let img = s.render();
    assert_eq!(img.get_pixel(16, 16).0, shapes::COLOURS[4].1);
    assert_eq!(img.get_pixel(2, 2).0, [128, 128, 128]);
    assert_eq!(s.label(), ("blue", "circle"));
}

#[test]
fn a_flat_folder_trains_unconditionally_and_epochs_visit_every_image() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..5u8 {
        image::RgbImage::from_pixel(64, 48, image::Rgb([i * 40, 100, 200]))
            .save(dir.path().join(format!("{i}.png")))
            .unwrap();
    }
    let cfg = TrainConfig {
        data: diffuse::train::DataSource::Folder(dir.path().to_path_buf()),
        ..tiny(2)
    };
    let mut t = Trainer::new(cfg, &Device::Cpu).unwrap();
    let ds = t.folder.clone().unwrap();
    assert!(t.config.unet.vocab.slots.is_empty());
    assert_eq!(ds.images.len(), 5);
    assert_eq!(ds.images[0].len(), 3 * 32 * 32);
    let mut first_epoch = ds.indices(1, 0, 5);
    first_epoch.sort();
    assert_eq!(first_epoch, vec![0, 1, 2, 3, 4]);
    assert_eq!(ds.indices(1, 3, 4), ds.indices(1, 3, 4));
    assert!(t.train_step().unwrap().loss.is_finite());
}

#[test]
fn training_state_keeps_no_autograd_graph() {
    // A regression guard: the EMA once kept each step's graph alive and a long run ran out of
    // memory at step 750.
    let mut t = Trainer::new(tiny(3), &Device::Cpu).unwrap();
    for _ in 0..2 {
        t.train_step().unwrap();
    }
    for (name, e) in &t.ema {
        assert!(!e.track_op(), "EMA tensor {name} tracks an op");
    }
    for (name, _, m, v) in &t.opt.state {
        assert!(
            !m.track_op() && !v.track_op(),
            "AdamW moments of {name} track an op"
        );
    }
}
