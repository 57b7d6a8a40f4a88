//! Cross-attention maps as pictures: for every prompt word, where the image attends to it
//! at the chosen steps, as a heat map over the final image (its grey levels). Writes one
//! row of frames per word (`attention/<i>_<word>.png`), a labelled grid of every word and
//! step (`attention/grid.png`) and a GIF that steps through them (`attention/attention.gif`).

use std::path::Path;

use image::{Rgb, RgbImage};

use crate::error::Result;
use crate::io::fs;
use crate::render::{animation, grid, save_png, upscale};

/// The smallest side, in pixels, a word map is drawn at in `generate`'s attention pictures.
pub const MAP_SIDE: u32 = 256;

/// The maps of one step: the label (`t=…`) and per word a `[H·W]` map.
pub struct StepMaps {
    pub label: String,
    pub words: Vec<Vec<f32>>,
}

/// "Hot" colours for v in [0, 1]: black, red, yellow, white.
fn hot(v: f32) -> [f32; 3] {
    let v = v.clamp(0.0, 1.0) * 3.0;
    [
        v.min(1.0),
        (v - 1.0).clamp(0.0, 1.0),
        (v - 2.0).clamp(0.0, 1.0),
    ]
    .map(|c| c * 255.0)
}

/// `map` (values in [lo, hi]) as hot colours over the grey levels of `base`.
pub fn heat(map: &[f32], (lo, hi): (f32, f32), base: &RgbImage) -> RgbImage {
    let w = base.width();
    RgbImage::from_fn(w, base.height(), |x, y| {
        let p = base.get_pixel(x, y).0;
        let grey = 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32;
        let m = map.get((y * w + x) as usize).copied().unwrap_or(lo);
        let v = (m - lo) / (hi - lo).max(1e-12);
        let c = hot(v);
        Rgb(c.map(|c| (0.65 * c + 0.35 * grey).round() as u8))
    })
}

/// Writes the maps of `words` over `steps` into `out/attention/`; returns the file names
/// relative to `out`.
pub fn save_word_maps(
    out: &Path,
    words: &[String],
    steps: &[StepMaps],
    base: &RgbImage,
    scale: u32,
    fps: f64,
) -> Result<Vec<String>> {
    let dir = out.join("attention");
    fs::create_dir(&dir)?;
    // Each word's maps share one scale (its lowest to its highest value over all steps), so
    // they compare over time.
    let range: Vec<(f32, f32)> = (0..words.len())
        .map(|w| {
            let vals = steps.iter().flat_map(|s| s.words[w].iter().copied());
            vals.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            })
        })
        .collect();
    let cell = |s: &StepMaps, w: usize| upscale(&heat(&s.words[w], range[w], base), scale);
    let labels: Vec<String> = steps.iter().map(|s| s.label.clone()).collect();
    let mut files = Vec::new();
    let mut rows = Vec::new();
    for (w, word) in words.iter().enumerate() {
        let cells: Vec<RgbImage> = steps.iter().map(|s| cell(s, w)).collect();
        let refs: Vec<&RgbImage> = cells.iter().collect();
        let name = format!("{w}_{word}.png");
        save_png(&grid(&refs, refs.len(), 2, Some(&labels)), &dir.join(&name))?;
        files.push(format!("attention/{name}"));
        rows.push(cells);
    }
    let all: Vec<&RgbImage> = rows.iter().flatten().collect();
    let grid_labels: Vec<String> = words
        .iter()
        .flat_map(|w| labels.iter().map(move |l| format!("{w} {l}")))
        .collect();
    save_png(
        &grid(&all, steps.len(), 2, Some(&grid_labels)),
        &dir.join("grid.png"),
    )?;
    files.push("attention/grid.png".into());
    let frames: Vec<RgbImage> = (0..steps.len())
        .map(|s| {
            let cells: Vec<&RgbImage> = rows.iter().map(|r| &r[s]).collect();
            grid(&cells, cells.len(), 2, Some(words))
        })
        .collect();
    fs::write_atomic(
        &dir.join("attention.gif"),
        &animation::gif_bytes(&frames, fps)?,
    )?;
    files.push("attention/attention.gif".into());
    Ok(files)
}
