//! The training run's previews: a grid of fixed prompts sampled with the EMA weights at every
//! checkpoint, judged (shapes or emoji judge) and logged to `eval_log.csv`.

use std::path::Path;

use image::RgbImage;

use crate::data::emoji;
use crate::error::Result;
use crate::io::fs;
use crate::render;
use crate::rng;
use crate::sampler::{self, SamplerConfig, SamplerKind};
use crate::train::Trainer;

/// The preview prompts as condition ids: for a text model, [`emoji::preview_captions`]; for a
/// slot model, every combination of its words (at most 64), or 16 unconditional samples for
/// a model without slots.
fn preview_prompts(config: &crate::unet::UNetConfig) -> Result<Vec<Vec<u32>>> {
    if config.text.is_some() {
        return emoji::preview_captions()
            .iter()
            .map(|c| crate::prompt::encode(c, config))
            .collect();
    }
    let vocab = &config.vocab;
    let mut prompts: Vec<Vec<u32>> = vec![vec![]];
    for slot in &vocab.slots {
        prompts = prompts
            .into_iter()
            .flat_map(|p| {
                (0..slot.words.len() as u32).map(move |w| {
                    let mut q = p.clone();
                    q.push(w);
                    q
                })
            })
            .take(64)
            .collect();
    }
    if vocab.slots.is_empty() {
        prompts = vec![vec![]; 16];
    }
    Ok(prompts)
}

/// One DDPM sample per prompt id list with the EMA weights, seed 0: unguided for slot models,
/// at the default guidance for text models. The inputs are made on the model's device
/// (through [`Guided::new`](crate::pipeline::Guided::new)).
pub fn preview_samples(trainer: &Trainer, ids: &[Vec<u32>], steps: usize) -> Result<Vec<RgbImage>> {
    let model = trainer.ema_model()?;
    let mut config = SamplerConfig {
        prediction: trainer.config.unet.prediction,
        ..SamplerConfig::new(SamplerKind::Ddpm, steps)
    };
    if trainer.latents.is_some() {
        config = config.for_latents();
    }
    let mut sampler = sampler::build(&config, &trainer.schedule)?;
    let guided = match &trainer.config.unet.text {
        None => crate::pipeline::Guided::new(&model, 1.0, ids, ids)?,
        Some(_) => {
            let nulls = vec![crate::prompt::null_ids(&trainer.config.unet); ids.len()];
            let scale = crate::defaults::SamplingDefaults::LIBRARY.guidance;
            crate::pipeline::Guided::new(&model, scale, ids, &nulls)?
        }
    };
    let x = crate::pipeline::sample(&guided, sampler.as_mut(), &mut rng::rng(0), |_, _| {})?;
    let x = trainer.decode(&x)?; // [B, 3, S, S]
    (0..ids.len())
        .map(|i| render::to_rgb8(&x.get(i)?))
        .collect()
}

/// The words of slot ids (the null token of a slot is left out).
fn prompt_text(vocab: &crate::unet::Vocabulary, ids: &[u32]) -> String {
    let words: Vec<&str> = vocab
        .slots
        .iter()
        .zip(ids)
        .filter_map(|(slot, &id)| slot.words.get(id as usize).map(String::as_str))
        .collect();
    words.join(" ")
}

/// The judge's reading of a preview grid: the shapes judge's tally, or the emoji judge's
/// counts for a text model.
pub enum PreviewScore {
    Shapes(crate::judge::Tally),
    Emoji(crate::jobs::eval_emoji::Counts),
}

/// Samples one image per prompt with the EMA weights and saves the grid (labelled with the
/// captions for a text model); returns the judge's reading where there is a judge for it.
pub fn save_preview(trainer: &Trainer, steps: usize, path: &Path) -> Result<Option<PreviewScore>> {
    let config = &trainer.config.unet;
    let ids = preview_prompts(config)?;
    let images = preview_samples(trainer, &ids, steps)?;
    let title = format!(
        "training step {}: the EMA weights, one sample per prompt ({steps} DDPM steps)",
        trainer.step
    );
    if config.text.is_some() {
        let captions = emoji::preview_captions();
        let big: Vec<RgbImage> = images.iter().map(|i| render::upscale(i, 2)).collect();
        let refs: Vec<&RgbImage> = big.iter().collect();
        let grid = render::grid(&refs, 4, 2, Some(&captions));
        render::save_png(
            &render::labelled_rows(&title, &[(String::new(), grid)]),
            path,
        )?;
        return Ok(Some(PreviewScore::Emoji(emoji_score(&images, &captions))));
    }
    let vocab = &config.vocab;
    let big: Vec<RgbImage> = images.iter().map(|i| render::upscale(i, 2)).collect();
    let refs: Vec<&image::RgbImage> = big.iter().collect();
    let cols = vocab.slots.last().map_or(4, |s| s.words.len().min(8));
    let labels: Vec<String> = ids.iter().map(|p| prompt_text(vocab, p)).collect();
    let grid = render::grid(&refs, cols, 2, Some(&labels));
    render::save_png(
        &render::labelled_rows(&title, &[(String::new(), grid)]),
        path,
    )?;
    if *vocab != crate::unet::Vocabulary::shapes() {
        return Ok(None);
    }
    let mut tally = crate::judge::Tally::default();
    for (img, id) in images.iter().zip(&ids) {
        tally.add(
            &crate::judge::judge(img),
            Some(id[0] as usize),
            Some(id[1] as usize),
        );
    }
    Ok(Some(PreviewScore::Shapes(tally)))
}

/// The emoji judge's counts over preview images and their captions.
fn emoji_score(images: &[RgbImage], captions: &[String]) -> crate::jobs::eval_emoji::Counts {
    let mut counts = crate::jobs::eval_emoji::Counts::default();
    for (img, caption) in images.iter().zip(captions) {
        let words = crate::text::tokenizer::words(caption);
        let Ok(parsed) = crate::text::grammar::parse(caption, &words) else {
            continue;
        };
        let nouns: Vec<usize> = parsed
            .nouns
            .iter()
            .filter_map(|n| emoji::noun_index(n))
            .collect();
        counts.add(&crate::judge::emoji::read(img, &nouns, parsed.relation));
    }
    counts
}

/// Appends the judge's accuracy on a preview grid to `eval_log.csv`.
pub(crate) fn append_eval_log(path: &Path, step: u64, score: &PreviewScore) -> Result<()> {
    let (header, row) = match score {
        PreviewScore::Shapes(t) => (
            "step,colour_accuracy,shape_accuracy,both_accuracy,no_clear_object",
            format!(
                "{step},{:.4},{:.4},{:.4},{}",
                t.colour_accuracy(),
                t.shape_accuracy(),
                t.both_accuracy(),
                t.no_clear_object
            ),
        ),
        PreviewScore::Emoji(c) => (
            "step,object_accuracy,all_found_accuracy,relation_accuracy,samples",
            format!(
                "{step},{:.4},{:.4},{:.4},{}",
                c.object_accuracy(),
                c.all_accuracy(),
                c.relation_accuracy(),
                c.samples
            ),
        ),
    };
    let mut text = std::fs::read_to_string(path).unwrap_or_else(|_| format!("{header}\n"));
    text.push_str(&row);
    text.push('\n');
    fs::write_atomic(path, text.as_bytes())
}
