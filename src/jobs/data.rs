//! `diffuse data`: training data written out to look at (shapes, or emoji scenes with their
//! captions). Images stream to disk in batches, so memory does not grow with `--count`.

use std::path::Path;

use rayon::prelude::*;

use crate::data::{emoji, shapes};
use crate::error::{Error, Result};
use crate::io::fs;
use crate::progress::Progress;
use crate::render;

/// Images written by default.
pub const DEFAULT_COUNT: usize = 64;
/// The most images one call writes.
pub const MAX_COUNT: usize = 1_000_000;
/// Refuses a count of zero or over [`MAX_COUNT`], before anything is written.
fn check_count(count: usize) -> Result<()> {
    if count == 0 {
        return Err(Error::option("count", 0, "write at least one image"));
    }
    if count > MAX_COUNT {
        return Err(Error::out_of_range(
            "count",
            count,
            format!("1..={MAX_COUNT}"),
        ));
    }
    Ok(())
}

/// Images drawn and written per batch.
const BATCH: usize = 256;

/// `diffuse data shapes`: writes `count` images named `{index}_{colour}_{shape}.png` and a
/// preview grid of the first 64.
pub fn write_shapes(
    seed: u64,
    count: usize,
    out: &Path,
    force: bool,
    progress: &dyn Progress,
) -> Result<usize> {
    check_count(count)?;
    let _lock = fs::prepare_output_dir(out, force)?;
    progress.stage("drawing shapes", count as u64);
    let mut preview = Vec::new();
    for first in (0..count).step_by(BATCH) {
        let items = shapes::render_range(seed, first as u64, BATCH.min(count - first));
        items
            .par_iter()
            .enumerate()
            .try_for_each(|(j, (spec, img))| {
                let (c, s) = spec.label();
                let i = first + j;
                render::save_png(img, &out.join(format!("{i:06}_{c}_{s}.png")))?;
                progress.advance(1);
                Ok::<_, Error>(())
            })?;
        keep_preview(&mut preview, items);
    }
    progress.finish();
    let refs: Vec<&image::RgbImage> = preview.iter().collect();
    render::save_png(&render::grid(&refs, 8, 2, None), &out.join("preview.png"))?;
    Ok(count)
}

/// One line of `captions.jsonl`.
#[derive(serde::Serialize)]
struct CaptionLine<'a> {
    file: String,
    caption: String,
    relation: Option<emoji::Relation>,
    objects: Vec<ObjectLine<'a>>,
}

#[derive(serde::Serialize)]
struct ObjectLine<'a> {
    noun: &'a str,
    /// x, y, width, height in pixels.
    r#box: [u32; 4],
}

/// `diffuse data emoji`: writes `count` scenes as `{index}.png`, their captions and object
/// boxes in `captions.jsonl`, and a preview grid of the first 64.
pub fn write_emoji(
    seed: u64,
    count: usize,
    out: &Path,
    force: bool,
    progress: &dyn Progress,
) -> Result<usize> {
    check_count(count)?;
    emoji::check_sprites()?;
    let _lock = fs::prepare_output_dir(out, force)?;
    progress.stage("drawing scenes", count as u64);
    let mut preview = Vec::new();
    let mut jsonl = String::new();
    for first in (0..count).step_by(BATCH) {
        let items = emoji::render_range(seed, first as u64, BATCH.min(count - first));
        items.par_iter().enumerate().try_for_each(|(j, (_, img))| {
            render::save_png(img, &out.join(format!("{:06}.png", first + j)))?;
            progress.advance(1);
            Ok::<_, Error>(())
        })?;
        for (j, (scene, _)) in items.iter().enumerate() {
            jsonl.push_str(&caption_line(first + j, scene)?);
            jsonl.push('\n');
        }
        keep_preview(&mut preview, items);
    }
    progress.finish();
    fs::write_atomic(&out.join("captions.jsonl"), jsonl.as_bytes())?;
    let refs: Vec<&image::RgbImage> = preview.iter().collect();
    render::save_png(&render::grid(&refs, 8, 2, None), &out.join("preview.png"))?;
    Ok(count)
}

fn caption_line(index: usize, scene: &emoji::Scene) -> Result<String> {
    let line = CaptionLine {
        file: format!("{index:06}.png"),
        caption: scene.caption(),
        relation: scene.relation,
        objects: scene
            .objects
            .iter()
            .map(|o| ObjectLine {
                noun: emoji::NOUNS[o.noun].name,
                r#box: [o.x, o.y, o.side, o.side],
            })
            .collect(),
    };
    serde_json::to_string(&line).map_err(|e| Error::Encode {
        format: "JSON",
        reason: e.to_string(),
    })
}

/// The held-out pairs, one "noun + noun" per line, for `diffuse data emoji --held-out`.
pub fn held_out_text() -> String {
    let pairs = emoji::held_out_pairs();
    let mut s = format!(
        "{} of the {} noun pairs never appear together in training:\n",
        pairs.len(),
        emoji::NOUNS.len() * (emoji::NOUNS.len() - 1) / 2
    );
    for (a, b) in pairs {
        s.push_str(&format!(
            "{} + {}\n",
            emoji::NOUNS[a].name,
            emoji::NOUNS[b].name
        ));
    }
    s
}

/// Keeps the first 64 pictures of the data for `preview.png`.
fn keep_preview<T>(preview: &mut Vec<image::RgbImage>, items: Vec<(T, image::RgbImage)>) {
    let room = 64 - preview.len().min(64);
    preview.extend(items.into_iter().take(room).map(|(_, i)| i));
}
