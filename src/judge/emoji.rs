//! The emoji-scene judge: template matching against the sprites the dataset draws.
//!
//! The background is estimated first: a plane per colour channel fitted to the picture's
//! border (the dataset's backgrounds are plain colours or linear gradients), refitted without
//! the border pixels an object covers; the border's median squared residual estimates the
//! picture's noise, which is taken off every error. Then for every noun and every sprite side from 19 to
//! 38 px, the whole box is compared with the picture at every position: the sprite's opaque
//! pixels against the picture, its transparent pixels against the background (mean squared
//! RGB error). Comparing the whole box keeps a small single-colour sprite (a heart) from
//! matching inside a larger one (an apple); requiring the opaque pixels to stand out from the
//! background keeps a grey or sparse sprite from matching bare background. The best match per noun gives a box and an
//! error; the picture's objects are the best matches under [`MAX_ERROR`], taken greedily so
//! that two objects do not share a box. A caption is then checked: the right nouns among the
//! objects, and their boxes in the right relation.

use std::sync::OnceLock;

use image::RgbImage;
use rayon::prelude::*;
use serde::Serialize;

use super::pixels::{blur, fit_plane};
use crate::data::emoji::{self, Relation, NOUNS};

pub use super::pixels::blurred;

/// The largest mean squared RGB error (in 8-bit units²) of a match that counts as an object.
pub const MAX_ERROR: f32 = 2000.0;
/// Sprite sides tried, in pixels.
const SIDES: std::ops::RangeInclusive<u32> = emoji::MIN_SIDE..=emoji::MAX_SIDE;
/// A match's opaque pixels must be this many times further from the background than from
/// the sprite, and at least [`MIN_VISIBLE`] from the background on average (squared RGB).
const MIN_CONTRAST: f32 = 3.0;
const MIN_VISIBLE: f32 = 300.0;
/// Boxes overlapping more than this (intersection over the smaller box) are one object.
const MAX_OVERLAP: f64 = 0.3;

/// Standard deviation, in pixels, of the Gaussian blur applied to both the picture and the
/// sprites before they are compared.
pub const BLUR_SIGMA: f32 = 1.0;

/// One pixel of a blurred sprite: its place, premultiplied colour and coverage.
#[derive(Clone, Copy)]
struct Texel {
    dx: u32,
    dy: u32,
    rgb: [f32; 3],
    alpha: f32,
}

/// One blurred sprite at one side: its mostly covered pixels and its mostly clear ones.
struct Template {
    noun: usize,
    side: u32,
    pixels: Vec<Texel>,
    clear: Vec<Texel>,
}

/// The sprite of `noun` at `side`, blurred as premultiplied RGBA (transparent pixels stay
/// transparent, not dark); pixels outside the sprite count as clear.
fn blurred_sprite(noun: usize, side: u32) -> Vec<Texel> {
    let sprite = emoji::sprite(noun, side);
    let mut v: Vec<f32> = sprite
        .pixels()
        .flat_map(|p| {
            let a = p.0[3] as f32 / 255.0;
            [p.0[0] as f32 * a, p.0[1] as f32 * a, p.0[2] as f32 * a, a]
        })
        .collect();
    let s = side as usize;
    blur(&mut v, s, s, 4, BLUR_SIGMA);
    v.chunks(4)
        .enumerate()
        .map(|(i, p)| Texel {
            dx: (i % s) as u32,
            dy: (i / s) as u32,
            rgb: [p[0], p[1], p[2]],
            alpha: p[3],
        })
        .collect()
}

fn templates() -> &'static Vec<Template> {
    static T: OnceLock<Vec<Template>> = OnceLock::new();
    T.get_or_init(|| {
        let mut out = Vec::new();
        for noun in 0..NOUNS.len() {
            for side in SIDES {
                let (pixels, clear) = blurred_sprite(noun, side)
                    .into_iter()
                    .partition(|t| t.alpha >= 0.5);
                out.push(Template {
                    noun,
                    side,
                    pixels,
                    clear,
                });
            }
        }
        out
    })
}

/// An object found in a picture.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Detection {
    pub noun: usize,
    /// The box: top-left corner and side.
    pub x: u32,
    pub y: u32,
    pub side: u32,
    /// Mean squared RGB error of the match.
    pub error: f32,
    /// Opaque pixels of the matched sprite: how much of the picture the match explains.
    pub pixels: usize,
}

impl Detection {
    pub fn centre(&self) -> (f64, f64) {
        let h = self.side as f64 / 2.0;
        (self.x as f64 + h, self.y as f64 + h)
    }

    /// Intersection over the smaller box.
    fn overlap(&self, o: &Detection) -> f64 {
        let ix = (self.x + self.side).min(o.x + o.side) as f64 - self.x.max(o.x) as f64;
        let iy = (self.y + self.side).min(o.y + o.side) as f64 - self.y.max(o.y) as f64;
        let small = self.side.min(o.side) as f64;
        (ix.max(0.0) * iy.max(0.0)) / (small * small)
    }
}

/// A picture as f32 RGB with its estimated background, both `[h·w·3]`.
struct Scene {
    w: u32,
    rgb: Vec<f32>,
    background: Vec<f32>,
    /// The picture's noise: the median squared difference (per channel) of the border pixels
    /// from the background planes. Noise adds about this much to every squared error.
    noise: f32,
}

impl Scene {
    /// The picture and its background: planes fitted to the border, then refitted to the
    /// border pixels within 40 levels of the first fit (objects touching the border drop out).
    fn new(img: &RgbImage) -> Self {
        let (w, h) = img.dimensions();
        let mut rgb: Vec<f32> = img.as_raw().iter().map(|&v| v as f32).collect();
        blur(&mut rgb, w as usize, h as usize, 3, BLUR_SIGMA);
        let border: Vec<(u32, u32)> = (0..w)
            .flat_map(|x| [(x, 0), (x, h - 1)])
            .chain((1..h.saturating_sub(1)).flat_map(|y| [(0, y), (w - 1, y)]))
            .collect();
        let mut background = vec![0f32; rgb.len()];
        for c in 0..3 {
            let v = |x: u32, y: u32| rgb[((y * w + x) * 3) as usize + c] as f64;
            let pts: Vec<(f64, f64, f64)> = border
                .iter()
                .map(|&(x, y)| (x as f64, y as f64, v(x, y)))
                .collect();
            let p = fit_plane(&pts);
            let near: Vec<(f64, f64, f64)> = pts
                .iter()
                .copied()
                .filter(|&(x, y, v)| (v - (p[0] + p[1] * x + p[2] * y)).abs() < 40.0)
                .collect();
            let p = if near.len() >= 8 { fit_plane(&near) } else { p };
            for y in 0..h {
                for x in 0..w {
                    let o = ((y * w + x) * 3) as usize + c;
                    background[o] = (p[0] + p[1] * x as f64 + p[2] * y as f64) as f32;
                }
            }
        }
        let mut residuals: Vec<f32> = border
            .iter()
            .map(|&(x, y)| {
                let o = ((y * w + x) * 3) as usize;
                (0..3)
                    .map(|c| (rgb[o + c] - background[o + c]).powi(2))
                    .sum::<f32>()
                    / 3.0
            })
            .collect();
        residuals.sort_by(f32::total_cmp);
        let noise = residuals.get(residuals.len() / 2).copied().unwrap_or(0.0);
        Self {
            w,
            rgb,
            background,
            noise,
        }
    }

    /// The template's error at (x, y): the mean squared error of its opaque pixels against
    /// the picture plus that of its transparent pixels against the background (each a mean
    /// of its own, so a sprite with few opaque pixels cannot hide in plain background).
    /// Stops early, returning infinity, once the opaque part alone exceeds `bound`. `strict`
    /// also requires the opaque pixels to stand out from the background.
    fn error_at(&self, t: &Template, x: u32, y: u32, bound: f32, strict: bool) -> f32 {
        // Errors are judged net of the picture's own noise.
        let limit = (bound + self.noise) * t.pixels.len() as f32;
        let sq = |a: &[f32], b: &[f32]| {
            let (d0, d1, d2) = (a[0] - b[0], a[1] - b[1], a[2] - b[2]);
            (d0 * d0 + d1 * d1 + d2 * d2) / 3.0
        };
        let at = |dx: u32, dy: u32| (((y + dy) * self.w + x + dx) * 3) as usize;
        // The blurred sprite composited over the background.
        let over = |p: &Texel, o: usize| {
            let b = &self.background[o..o + 3];
            let k = 1.0 - p.alpha;
            [
                p.rgb[0] + k * b[0],
                p.rgb[1] + k * b[1],
                p.rgb[2] + k * b[2],
            ]
        };
        let (mut opaque, mut contrast) = (0f32, 0f32);
        for (i, p) in t.pixels.iter().enumerate() {
            let o = at(p.dx, p.dy);
            opaque += sq(&self.rgb[o..o + 3], &over(p, o));
            contrast += sq(&self.rgb[o..o + 3], &self.background[o..o + 3]);
            if i % 32 == 31 && opaque > limit {
                return f32::INFINITY;
            }
        }
        // The sprite must explain the picture clearly better than bare background does.
        let n = t.pixels.len().max(1) as f32;
        let (opaque_net, contrast_net) = (
            (opaque / n - self.noise).max(0.0),
            contrast / n - self.noise,
        );
        let visible = contrast_net >= MIN_VISIBLE;
        if strict && (contrast_net < MIN_CONTRAST * opaque_net.max(1.0) || !visible) {
            return f32::INFINITY;
        }
        let mut clear = 0f32;
        for p in &t.clear {
            let o = at(p.dx, p.dy);
            clear += sq(&self.rgb[o..o + 3], &over(p, o));
        }
        let clear_net = (clear / t.clear.len().max(1) as f32 - self.noise).max(0.0);
        opaque_net + clear_net
    }
}

/// The best match of `noun` among sides `sides` and top-left corners in `xs` × `ys` (each
/// kept inside the picture), or None when none beats `bound`.
fn search(
    scene: &Scene,
    noun: usize,
    sides: &[u32],
    xs: (i64, i64, usize),
    ys: (i64, i64, usize),
    bound: f32,
    strict: bool,
) -> Option<Detection> {
    let side_px = scene.rgb.len() as u32 / 3 / scene.w;
    let mut best: Option<Detection> = None;
    for t in templates()
        .iter()
        .filter(|t| t.noun == noun && sides.contains(&t.side))
    {
        let (max_x, max_y) = ((scene.w - t.side) as i64, (side_px - t.side) as i64);
        for y in (ys.0.max(0)..=ys.1.min(max_y)).step_by(ys.2) {
            for x in (xs.0.max(0)..=xs.1.min(max_x)).step_by(xs.2) {
                let limit = best.map_or(bound, |b| b.error);
                let e = scene.error_at(t, x as u32, y as u32, limit, strict);
                if e < limit {
                    best = Some(Detection {
                        noun,
                        x: x as u32,
                        y: y as u32,
                        side: t.side,
                        error: e,
                        pixels: t.pixels.len(),
                    });
                }
            }
        }
    }
    best
}

/// The best match of every noun, in noun order (error infinity where none is under
/// [`MAX_ERROR`]): a coarse search (every other side and position, with a looser bound and
/// no contrast test), then a strict fine one within 2 px and 2 sides of the coarse best.
pub fn best_matches(img: &RgbImage) -> Vec<Detection> {
    let scene = Scene::new(img);
    let (w, h) = img.dimensions();
    let max_side = emoji::MAX_SIDE.min(w).min(h);
    let coarse: Vec<u32> = (emoji::MIN_SIDE..=max_side)
        .step_by(2)
        .chain([max_side])
        .collect();
    let (wi, hi) = (w as i64, h as i64);
    (0..NOUNS.len())
        .into_par_iter()
        .map(|noun| {
            let none = Detection {
                noun,
                x: 0,
                y: 0,
                side: 0,
                error: f32::INFINITY,
                pixels: 0,
            };
            let coarse_bound = 4.0 * MAX_ERROR;
            let Some(c) = search(
                &scene,
                noun,
                &coarse,
                (0, wi, 2),
                (0, hi, 2),
                coarse_bound,
                false,
            ) else {
                return none;
            };
            let sides: Vec<u32> = (c.side.saturating_sub(2)..=c.side + 2).collect();
            let (cx, cy) = (c.x as i64, c.y as i64);
            let (xs, ys) = ((cx - 2, cx + 2, 1), (cy - 2, cy + 2, 1));
            search(&scene, noun, &sides, xs, ys, MAX_ERROR, true).unwrap_or(none)
        })
        .collect()
}

/// The objects in a picture: the best matches under [`MAX_ERROR`], best first, at most
/// `max` of them, no two on one box.
pub fn detect(img: &RgbImage, max: usize) -> Vec<Detection> {
    let mut matches = best_matches(img);
    matches.retain(|m| m.error <= MAX_ERROR);
    matches.sort_by(|a, b| a.error.total_cmp(&b.error));
    let mut found: Vec<Detection> = Vec::new();
    for m in matches {
        if found.len() == max {
            break;
        }
        if found.iter().all(|f| f.overlap(&m) <= MAX_OVERLAP) {
            found.push(m);
        }
    }
    found
}

/// The judge's reading of a picture against its caption.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reading {
    /// Per caption noun: whether it is among the objects found.
    pub found: Vec<bool>,
    /// Whether every caption noun was found (and, for one noun, it is the main object).
    pub all_found: bool,
    /// For a spatial relation with both nouns found: whether their boxes honour it.
    pub relation_ok: Option<bool>,
    /// Whether an object the caption does not name was found.
    pub extra: bool,
    pub detections: Vec<Detection>,
}

/// Checks `img` against a caption of `nouns` (one or two) and `relation`.
pub fn read(img: &RgbImage, nouns: &[usize], relation: Option<Relation>) -> Reading {
    let detections = detect(img, 2);
    let box_of = |n: usize| detections.iter().find(|d| d.noun == n);
    let found: Vec<bool> = match nouns {
        // One noun: it must be the clearest object.
        [n] => vec![detections.first().is_some_and(|d| d.noun == *n)],
        _ => nouns.iter().map(|&n| box_of(n).is_some()).collect(),
    };
    let all_found = !found.is_empty() && found.iter().all(|&f| f);
    let relation_ok = match (relation, nouns) {
        (Some(r), [a, b]) if r.is_spatial() => match (box_of(*a), box_of(*b)) {
            (Some(da), Some(db)) => Some(r.holds(da.centre(), db.centre())),
            _ => None,
        },
        _ => None,
    };
    let extra = detections.iter().any(|d| !nouns.contains(&d.noun));
    Reading {
        found,
        all_found,
        relation_ok,
        extra,
        detections,
    }
}
