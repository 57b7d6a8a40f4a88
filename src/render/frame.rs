//! Frames that explain themselves: a title band (the step, the timestep, what the frame is),
//! then each row of images under its name ("x_t: noisy image", "x0: the model's guess",
//! "eps: predicted noise"). Every frame of a run has the same size, as a GIF needs.

use candle_core::Tensor;
use image::{Rgb, RgbImage};

use super::{draw_text, grid, outline_tiles, to_rgb8, upscale};
use crate::error::Result;

/// The largest `--scale`: frames stay below the GIF's 65,535-pixel side.
pub const MAX_SCALE: u32 = 64;

/// Refuses a `--scale` of 0 or above [`MAX_SCALE`].
pub fn check_scale(scale: Option<u32>) -> Result<()> {
    match scale.filter(|s| *s == 0 || *s > MAX_SCALE) {
        Some(s) => Err(crate::error::Error::out_of_range(
            "scale",
            s,
            format!("1..={MAX_SCALE}"),
        )),
        None => Ok(()),
    }
}

/// The smallest side an image is shown at by default, in pixels.
pub const MIN_DISPLAY_SIDE: u32 = crate::defaults::SamplingDefaults::LIBRARY.display_side;

/// The default upscaling: each `side`-pixel image at least [`MIN_DISPLAY_SIDE`] pixels.
pub fn default_scale(side: usize) -> u32 {
    MIN_DISPLAY_SIDE.div_ceil(side.max(1) as u32).max(1)
}

/// The narrowest frame, in pixels, so the titles fit beside small images (55 characters a line).
pub const MIN_FRAME_WIDTH: u32 = 448;

/// `text` broken at spaces into lines of at most `chars` characters (two at most; the rest
/// is cut).
fn wrap(text: &str, chars: usize) -> Vec<String> {
    let mut lines: Vec<String> = vec![String::new()];
    for word in text.split(' ') {
        let line = lines.last_mut().expect("one line");
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > chars {
            lines.push(word.to_string());
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines.truncate(2);
    lines
}

/// What a row shows.
pub enum Tiles<'a> {
    /// Images `[K, 3, H, W]` in model space.
    Images(&'a Tensor),
    /// Noise `[K, 3, H, W]` (about unit variance), shown at ±2σ.
    Noise(&'a Tensor),
    /// Nothing yet: grey tiles.
    Blank,
}

/// One named row of K images.
pub struct Row<'a> {
    pub name: &'a str,
    pub tiles: Tiles<'a>,
}

const BAND_INK: Rgb<u8> = Rgb([20, 20, 20]);
const BAND_PAPER: Rgb<u8> = Rgb([255, 255, 255]);

/// The tiles of a row side by side with 1-pixel gaps, upscaled.
fn row_image(tiles: &Tiles, k: usize, side: usize, scale: u32) -> Result<RgbImage> {
    let images: Vec<RgbImage> = match tiles {
        Tiles::Images(x) => (0..k).map(|i| to_rgb8(&x.get(i)?)).collect::<Result<_>>()?,
        Tiles::Noise(e) => {
            let shown = e.affine(0.5, 0.0)?; // ±2σ → [-1, 1]
            (0..k)
                .map(|i| to_rgb8(&shown.get(i)?))
                .collect::<Result<_>>()?
        }
        Tiles::Blank => {
            let s = side as u32;
            vec![RgbImage::from_pixel(s, s, Rgb([128; 3])); k]
        }
    };
    let refs: Vec<&RgbImage> = images.iter().collect();
    Ok(upscale(&grid(&refs, k, 1, None), scale))
}

/// A frame of `rows` (K images each, `side` pixels, upscaled by `scale`) under `title`,
/// with the repainted region outlined on the image rows when `outline` is given.
pub fn labelled_frame(
    title: &str,
    rows: &[Row],
    (k, side, scale): (usize, usize, u32),
    outline: Option<&[bool]>,
) -> Result<RgbImage> {
    let mut images = Vec::with_capacity(rows.len());
    for row in rows {
        let mut img = row_image(&row.tiles, k, side, scale)?;
        if let (Some(repaint), Tiles::Images(_)) = (outline, &row.tiles) {
            outline_tiles(&mut img, repaint, side, (k, 1), scale);
        }
        images.push(img);
    }
    let body_w = images.first().map_or(1, RgbImage::width);
    // The font at double size once the images are wide enough for it.
    let ts = if body_w >= 2 * MIN_FRAME_WIDTH { 2 } else { 1 };
    let line = 8 * ts + 4;
    let width = body_w.max(MIN_FRAME_WIDTH * ts);
    let chars = ((width - 8) / (8 * ts)) as usize;
    let title_h = 2 * line + 4;
    let height = title_h + images.iter().map(|i| i.height() + line + 2).sum::<u32>();
    let mut out = RgbImage::from_pixel(width, height, BAND_PAPER);
    for (l, text) in wrap(title, chars).iter().enumerate() {
        draw_text(&mut out, text, 4, 3 + l as u32 * line, ts, BAND_INK);
    }
    let mut y = title_h;
    for (row, img) in rows.iter().zip(&images) {
        draw_text(&mut out, row.name, 4, y + 2, ts, BAND_INK);
        image::imageops::replace(&mut out, img, 0, (y + line + 2) as i64);
        y += line + 2 + img.height();
    }
    Ok(out)
}
