//! Drawing emoji scenes: muted plain or gradient backgrounds, the Twemoji sprites decoded
//! once and resized to every side the dataset uses, and alpha compositing.

use std::sync::OnceLock;

use image::imageops::FilterType;
use image::{Rgb, RgbImage, RgbaImage};
use rand::Rng as _;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::{Background, MAX_SIDE, MIN_SIDE, NOUNS, SIZE};
use crate::error::{Error, Result};

/// Alpha-composites `sprite` onto `img` with its top-left corner at (x, y).
pub(super) fn composite(img: &mut RgbImage, sprite: &RgbaImage, x: u32, y: u32) {
    for (sx, sy, p) in sprite.enumerate_pixels() {
        let (px, py) = (x + sx, y + sy);
        if px >= img.width() || py >= img.height() || p.0[3] == 0 {
            continue;
        }
        let a = p.0[3] as f32 / 255.0;
        let dst = img.get_pixel_mut(px, py);
        for c in 0..3 {
            dst.0[c] = (dst.0[c] as f32 * (1.0 - a) + p.0[c] as f32 * a).round() as u8;
        }
    }
}

/// A muted colour (low saturation, light), so sprites stand out from it.
fn muted(rng: &mut ChaCha8Rng) -> [u8; 3] {
    let hue = rng.random::<f64>() * 6.0;
    let sat = rng.random_range(0.1..0.45);
    let val = rng.random_range(0.55..0.95);
    let f = hue.fract();
    let (p, q, t) = (
        val * (1.0 - sat),
        val * (1.0 - sat * f),
        val * (1.0 - sat * (1.0 - f)),
    );
    let rgb = match hue as u32 {
        0 => (val, t, p),
        1 => (q, val, p),
        2 => (p, val, t),
        3 => (p, q, val),
        4 => (t, p, val),
        _ => (val, p, q),
    };
    [rgb.0, rgb.1, rgb.2].map(|v| (v * 255.0).round() as u8)
}

pub(super) fn sample_background(rng: &mut ChaCha8Rng) -> Background {
    let from = muted(rng);
    if rng.random::<bool>() {
        return Background {
            from,
            to: from,
            dir: (0.0, 0.0),
        };
    }
    let to = muted(rng);
    let angle = rng.random_range(0..8) as f64 * std::f64::consts::FRAC_PI_4;
    Background {
        from,
        to,
        dir: (angle.cos(), angle.sin()),
    }
}

impl Background {
    /// The background alone.
    pub fn render(&self) -> RgbImage {
        let c = (SIZE as f64 - 1.0) / 2.0;
        // Projections of the corners onto the direction span [-reach, reach].
        let reach = (self.dir.0.abs() + self.dir.1.abs()) * c;
        RgbImage::from_fn(SIZE, SIZE, |x, y| {
            let along = (x as f64 - c) * self.dir.0 + (y as f64 - c) * self.dir.1;
            let u = if reach > 0.0 {
                (along / reach + 1.0) / 2.0
            } else {
                0.0
            };
            Rgb(std::array::from_fn(|i| {
                (self.from[i] as f64 * (1.0 - u) + self.to[i] as f64 * u).round() as u8
            }))
        })
    }
}

/// The sprites, decoded once and resized to every side from [`MIN_SIDE`] to [`MAX_SIDE`].
fn sprites() -> &'static Vec<Vec<RgbaImage>> {
    static SPRITES: OnceLock<Vec<Vec<RgbaImage>>> = OnceLock::new();
    SPRITES.get_or_init(|| {
        NOUNS
            .par_iter()
            .map(|n| {
                // The PNGs are compiled in and decode (checked by the tests); a failure
                // here would be a broken build, so it yields a blank sprite, not a panic.
                let full = image::load_from_memory(n.png)
                    .map(|i| i.to_rgba8())
                    .unwrap_or_else(|_| RgbaImage::new(72, 72));
                (MIN_SIDE..=MAX_SIDE)
                    .map(|s| image::imageops::resize(&full, s, s, FilterType::Triangle))
                    .collect()
            })
            .collect()
    })
}

/// Noun `noun`'s sprite at `side` pixels (clamped to the dataset's range).
pub fn sprite(noun: usize, side: u32) -> &'static RgbaImage {
    let side = side.clamp(MIN_SIDE, MAX_SIDE);
    &sprites()[noun][(side - MIN_SIDE) as usize]
}

/// Checks that every sprite decodes (a build whose assets are broken says so).
pub fn check_sprites() -> Result<()> {
    for n in &NOUNS {
        image::load_from_memory(n.png).map_err(|e| Error::Image {
            path: format!("twemoji {}.png ({})", n.code, n.name).into(),
            reason: e.to_string(),
        })?;
    }
    Ok(())
}
