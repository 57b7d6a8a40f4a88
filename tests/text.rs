//! Text-to-image in miniature: tokenizer and caption grammar, the emoji-scene dataset
//! (positions honour the relation, held-out pairs never appear), the text model's shapes and
//! gradient flow, a tiny text model learning a fixed batch, the emoji judge on clean scenes,
//! and the shapes model's samples unchanged by it all.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use diffuse::data::emoji::{self, Relation, Scene, NOUNS};
use diffuse::text::{grammar, tokenizer, TextConfig};
use diffuse::unet::{UNet, UNetConfig};

#[test]
fn tokenizer_round_trips_and_pads() {
    let cfg = TextConfig::emoji();
    let tok = cfg.tokenizer();
    let ids = tok.encode("A Cat with a Computer").unwrap();
    assert_eq!(ids.len(), cfg.max_len);
    assert_eq!(&ids[5..], &[0, 0, 0]);
    assert_eq!(tok.decode(&ids), "a cat with a computer");
    assert_eq!(tok.encode("").unwrap(), tok.null_ids());
    assert!(tok.null_ids().iter().all(|&i| i == tokenizer::PAD_ID));
    for n in &NOUNS {
        assert!(tok.id(n.name).is_some(), "{}", n.name);
    }
    assert_eq!(tok.id("<pad>"), None, "padding is not a word");
}

#[test]
fn tokenizer_errors_name_the_word_and_suggest_the_closest() {
    let cfg = TextConfig::emoji();
    let e = cfg
        .tokenizer()
        .encode("a cat wiht a computer")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("unknown word 'wiht' in prompt"), "{e}");
    assert!(e.contains("closest: with"), "{e}");
    let e = cfg
        .tokenizer()
        .encode("a cat and a dog and a tree and")
        .unwrap_err()
        .to_string();
    assert!(e.contains("has 9 words; this model reads at most 8"), "{e}");
}

#[test]
fn grammar_accepts_captions_and_refuses_what_was_never_taught() {
    let parse = |p: &str| grammar::parse(p, &tokenizer::words(p));
    let c = parse("a dog left of an apple").unwrap();
    assert_eq!(c.nouns, ["dog", "apple"]);
    assert_eq!(c.relation, Some(Relation::LeftOf));
    assert_eq!(parse("cat").unwrap().nouns, ["cat"]);
    assert!(parse("").unwrap().nouns.is_empty());
    let err = |p: &str| parse(p).unwrap_err().to_string();
    assert!(err("a cat above").contains("a relation with one noun"));
    assert!(err("a with a").contains("where a noun belongs"));
    assert!(err("a a").contains("names no noun"));
    assert!(err("a cat a dog").contains("without a relation"));
    assert!(err("a cat left a dog").contains("uses 'left' outside a relation"));
    // Every training caption parses back to its scene.
    for i in 0..500 {
        let s = Scene::sample(3, i);
        let c = parse(&s.caption()).unwrap();
        let nouns: Vec<&str> = s.objects.iter().map(|o| NOUNS[o.noun].name).collect();
        assert_eq!(c.nouns, nouns);
        assert_eq!(c.relation, s.relation);
    }
}

#[test]
fn scene_boxes_fit_and_honour_the_caption() {
    let mut relations = std::collections::HashSet::new();
    for i in 0..5000 {
        let s = Scene::sample(1, i);
        for o in &s.objects {
            assert!((emoji::MIN_SIDE..=emoji::MAX_SIDE).contains(&o.side));
            assert!(o.x + o.side <= emoji::SIZE && o.y + o.side <= emoji::SIZE);
        }
        match (s.relation, s.objects.as_slice()) {
            (None, [_]) => {}
            (Some(r), [a, b]) => {
                relations.insert(format!("{r:?}"));
                assert!(
                    r.holds(a.centre(), b.centre()),
                    "scene {i}: {}",
                    s.caption()
                );
                // Along the relation's axis the boxes do not overlap.
                let apart_x = a.x + a.side <= b.x || b.x + b.side <= a.x;
                let apart_y = a.y + a.side <= b.y || b.y + b.side <= a.y;
                assert!(apart_x || apart_y, "scene {i} overlaps");
            }
            _ => panic!("scene {i} has {} objects", s.objects.len()),
        }
    }
    assert_eq!(relations.len(), 6);
    // Same index, same scene; the rendering is deterministic too.
    assert_eq!(Scene::sample(1, 77), Scene::sample(1, 77));
    assert_eq!(Scene::sample(1, 77).render(), Scene::sample(1, 77).render());
}

#[test]
fn held_out_pairs_never_appear_in_100000_training_scenes() {
    let held = emoji::held_out_pairs();
    let total = NOUNS.len() * (NOUNS.len() - 1) / 2;
    assert!(held.len() * 10 >= total, "{} of {total}", held.len());
    assert!(emoji::is_held_out(0, 2), "cat + computer is held out");
    let mut alone = vec![false; NOUNS.len()];
    let mut paired = vec![false; NOUNS.len()];
    for i in 0..100_000 {
        let s = Scene::sample(1, i);
        match s.objects.as_slice() {
            [a] => alone[a.noun] = true,
            [a, b] => {
                assert!(
                    !emoji::is_held_out(a.noun, b.noun),
                    "scene {i}: {}",
                    s.caption()
                );
                paired[a.noun] = true;
                paired[b.noun] = true;
            }
            _ => unreachable!(),
        }
    }
    assert!(alone.iter().all(|&x| x) && paired.iter().all(|&x| x));
}

#[test]
fn every_sprite_decodes() {
    emoji::check_sprites().unwrap();
    let s = emoji::sprite(0, 30);
    assert_eq!(s.dimensions(), (30, 30));
}

fn build(cfg: &UNetConfig) -> (UNet, VarMap) {
    let vm = VarMap::new();
    let vb = diffuse::nn::init::SeededInit::var_builder(&vm, 0, &Device::Cpu);
    (UNet::new(cfg, vb).unwrap(), vm)
}

fn caption_ids(cfg: &UNetConfig, captions: &[&str]) -> Tensor {
    let ids: Vec<Vec<u32>> = captions
        .iter()
        .map(|c| diffuse::prompt::encode(c, cfg).unwrap())
        .collect();
    diffuse::unet::cond_tensor(&ids, &Device::Cpu).unwrap()
}

#[test]
fn text_unet_shapes_and_every_weight_gets_a_gradient() {
    let cfg = common::tiny_text_unet();
    let (model, vm) = build(&cfg);
    let x = diffuse::rng::randn(&mut diffuse::rng::rng(0), (2, 3, 16, 16), &Device::Cpu).unwrap();
    let cond = caption_ids(&cfg, &["a cat with a computer", ""]);
    let mut maps = Vec::new();
    let y = model
        .forward_observed(&x, &[10.0, 700.0], &cond, Some(&mut maps))
        .unwrap();
    assert_eq!(y.dims(), &[2, 3, 16, 16]);
    // Cross-attention at 8 px: down, middle, two up; each [B, heads, H·W, L].
    let px: Vec<usize> = maps.iter().map(|(p, _)| *p).collect();
    assert_eq!(px, [8, 8, 8, 8]);
    assert_eq!(maps[0].1.dims(), &[2, 2, 64, 8]);
    let row_sums = maps[0].1.sum(3).unwrap();
    assert!(common::max_abs_diff(&row_sums, &row_sums.ones_like().unwrap()) < 1e-5);
    // The prompt changes the output.
    let other = caption_ids(&cfg, &["a dog", ""]);
    let y2 = model.forward(&x, &[10.0, 700.0], &other).unwrap();
    assert!(common::max_abs_diff(&y.get(0).unwrap(), &y2.get(0).unwrap()) > 1e-6);
    let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    let data = vm.data().lock().unwrap();
    let mut without: Vec<&String> = data
        .iter()
        .filter(|(_, v)| {
            grads.get(v.as_tensor()).is_none_or(|g| {
                g.abs()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
                    == 0.0
            })
        })
        .map(|(n, _)| n)
        .collect();
    without.sort();
    // Only the embeddings of tokens no prompt above used get no gradient... and those are
    // rows of one table, which as a whole does get one.
    assert!(without.is_empty(), "no gradient: {without:?}");
    assert!(data.keys().any(|k| k.starts_with("text.layers.0.attn")));
    assert!(data.keys().any(|k| k.contains("attn2.to_k")));
}

#[test]
fn a_tiny_text_model_learns_a_fixed_batch() {
    let cfg = common::tiny_text_unet();
    let (model, vm) = build(&cfg);
    let captions = ["a cat", "a dog", "a sun above a car", ""];
    let cond = caption_ids(&cfg, &captions);
    let mut r = diffuse::rng::rng(5);
    let x0 = diffuse::rng::randn(&mut r, (4, 3, 16, 16), &Device::Cpu).unwrap();
    let eps = diffuse::rng::randn(&mut r, (4, 3, 16, 16), &Device::Cpu).unwrap();
    let t = [50.0, 300.0, 600.0, 900.0];
    let schedule = diffuse::schedule::NoiseSchedule::new(Default::default()).unwrap();
    let x_t = schedule.q_sample(&x0, &[50, 300, 600, 900], &eps).unwrap();
    let vars = diffuse::train::named_vars(&vm).unwrap();
    let mut opt = diffuse::train::optim::AdamW::new(vars, Default::default()).unwrap();
    let loss = |m: &UNet| candle_nn::loss::mse(&m.forward(&x_t, &t, &cond).unwrap(), &eps).unwrap();
    let first = loss(&model).to_scalar::<f32>().unwrap();
    for _ in 0..150 {
        let l = loss(&model);
        opt.step(&l.backward().unwrap(), 3e-3, 1.0).unwrap();
    }
    let last = loss(&model).to_scalar::<f32>().unwrap();
    assert!(last < 0.3 * first, "loss {first} → {last}");
}

/// f32 op against the f64 candle composition: values and the gradients of Σ y·w.
fn check_op(
    name: &str,
    inputs: &[Tensor],
    fast: impl Fn(&[Tensor]) -> Tensor,
    reference: impl Fn(&[Tensor]) -> Tensor,
    tol: f64,
) {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = fast(&ts);
    let w =
        diffuse::rng::randn(&mut diffuse::rng::rng(9), y.shape().clone(), &Device::Cpu).unwrap();
    let g = (&y * &w).unwrap().sum_all().unwrap().backward().unwrap();
    let vars64: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(&t.to_dtype(DType::F64).unwrap()).unwrap())
        .collect();
    let ts64: Vec<Tensor> = vars64.iter().map(|v| v.as_tensor().clone()).collect();
    let y64 = reference(&ts64);
    let w64 = w.to_dtype(DType::F64).unwrap();
    let g64 = (&y64 * &w64)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let rel = |a: &Tensor, b: &Tensor| {
        let a = a.to_dtype(DType::F64).unwrap();
        let d = (&a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        let s = b
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        d / s.max(1e-6)
    };
    let e = rel(&y, &y64);
    assert!(e < tol, "{name} value: {e}");
    for (i, (v, v64)) in vars.iter().zip(&vars64).enumerate() {
        let (ga, gb) = (g.get(v.as_tensor()), g64.get(v64.as_tensor()));
        let (Some(ga), Some(gb)) = (ga, gb) else {
            panic!(
                "{name}: no gradient for input {i} ({} {})",
                ga.is_some(),
                gb.is_some()
            );
        };
        let e = rel(ga, gb);
        assert!(e < tol, "{name} gradient {i}: {e}");
    }
}

#[test]
fn fused_ops_match_candles_composition_in_f64() {
    let mut r = diffuse::rng::rng(1);
    let mut randn = |s: &[usize]| diffuse::rng::randn(&mut r, s, &Device::Cpu).unwrap();
    use diffuse::nn::{attention, geglu, layer_norm};
    for (n, l) in [(37, 37), (64, 8), (5, 1)] {
        let (q, k, v) = (randn(&[6, n, 16]), randn(&[6, l, 16]), randn(&[6, l, 16]));
        check_op(
            &format!("attention {n}x{l}"),
            &[q, k, v],
            |t| attention::attention(&t[0], &t[1], &t[2], 0.25).unwrap(),
            |t| attention::attention_reference(&t[0], &t[1], &t[2], 0.25).unwrap(),
            1e-4,
        );
    }
    let (x, g, b) = (randn(&[3, 70, 48]), randn(&[48]), randn(&[48]));
    check_op(
        "layer_norm",
        &[((x * 3.0).unwrap() + 1.0).unwrap(), g, b],
        |t| layer_norm::layer_norm(&t[0], &t[1], &t[2], 1e-5).unwrap(),
        |t| layer_norm::layer_norm_reference(&t[0], &t[1], &t[2], 1e-5).unwrap(),
        1e-4,
    );
    check_op(
        "geglu",
        &[(randn(&[2, 33, 40]) * 2.0).unwrap()],
        |t| geglu::geglu(&t[0]).unwrap(),
        |t| geglu::geglu_reference(&t[0]).unwrap(),
        1e-4,
    );
}

#[test]
fn the_emoji_judge_reads_clean_dataset_scenes() {
    for (i, (scene, img)) in emoji::render_range(4242, 0, 60).into_iter().enumerate() {
        let nouns: Vec<usize> = scene.objects.iter().map(|o| o.noun).collect();
        let r = diffuse::judge::emoji::read(&img, &nouns, scene.relation);
        assert!(
            r.all_found,
            "scene {i} '{}': {:?}",
            scene.caption(),
            r.detections
        );
        assert_ne!(
            r.relation_ok,
            Some(false),
            "scene {i} '{}'",
            scene.caption()
        );
        assert!(!r.extra, "scene {i}: {:?}", r.detections);
        // Model samples are softer than sprites: a blurred scene reads the same.
        if i % 4 == 0 {
            let soft = diffuse::judge::emoji::blurred(&img, 1.5);
            let r = diffuse::judge::emoji::read(&soft, &nouns, scene.relation);
            assert!(
                r.all_found && !r.extra,
                "blurred scene {i}: {:?}",
                r.detections
            );
        }
    }
    // A bare background has no object.
    let bare = Scene::sample(4242, 0).background.render();
    assert!(diffuse::judge::emoji::detect(&bare, 2).is_empty());
}

#[test]
fn the_shapes_models_samples_are_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let o = common::diffuse(&[
        "--threads",
        "2",
        "-q",
        "generate",
        "--model",
        "shapes32",
        "--prompt",
        "a red circle",
        "--seed",
        "1",
        "--num-images",
        "2",
        "--steps",
        "10",
        "--out",
        common::s(dir.path()),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Byte equality holds on the machine that made the fixtures (benches/compare_outputs.sh
    // checks it there); another CPU's GEMM may sum in another order, so here the pictures
    // must agree to within rounding noise, which any change to the math would exceed.
    for name in ["sample_00.png", "sample_01.png"] {
        let got = std::fs::read(dir.path().join(name)).unwrap();
        let want = std::fs::read(format!("tests/data/shapes32_before/{name}")).unwrap();
        if got == want {
            continue;
        }
        let (a, b) = (
            image::load_from_memory(&got).unwrap().to_rgb8(),
            image::load_from_memory(&want).unwrap().to_rgb8(),
        );
        let diffs: Vec<u8> = a
            .iter()
            .zip(b.iter())
            .map(|(x, y)| x.abs_diff(*y))
            .collect();
        let mean = diffs.iter().map(|&d| d as f64).sum::<f64>() / diffs.len() as f64;
        let max = diffs.iter().copied().max().unwrap_or(0);
        assert!(
            mean <= 0.5 && max <= 12,
            "{name}: mean {mean:.3}, max {max}"
        );
    }
}

#[test]
fn softmax_keeps_candles_forward_bits_and_has_a_backward_pass() {
    // Regression: candle-nn's softmax_last_dim has no backward pass, so the shapes UNet's
    // query and key projections never received a gradient.
    let x = diffuse::rng::randn(&mut diffuse::rng::rng(3), (4, 7, 33), &Device::Cpu).unwrap();
    let ours = diffuse::nn::softmax::softmax_last_dim(&x).unwrap();
    let candles = candle_nn::ops::softmax_last_dim(&x).unwrap();
    assert_eq!(common::to_vec(&ours), common::to_vec(&candles));
    check_op(
        "softmax",
        &[(x * 2.0).unwrap()],
        |t| diffuse::nn::softmax::softmax_last_dim(&t[0]).unwrap(),
        |t| candle_nn::ops::softmax(&t[0], candle_core::D::Minus1).unwrap(),
        1e-5,
    );
}
