//! The shapes judge: an analytic classifier of 32×32 shapes images. It estimates the background from
//! the border, segments the object by its distance from the background, names the colour as
//! the nearest palette entry and the shape by the best overlap with each shape's template
//! fitted to the object's bounding box. Also the accuracy bookkeeping for `diffuse eval`.

use image::RgbImage;
use serde::Serialize;

use crate::data::shapes::{Shape, COLOURS};

/// The judge's reading of one image.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Verdict {
    /// Index into the palette, or None when there is no clear object.
    pub colour: Option<usize>,
    /// Index into [`Shape::ALL`], or None when there is no clear object.
    pub shape: Option<usize>,
    /// Overlap (soft IoU) of the best shape template, 0–1.
    pub shape_score: f64,
}

impl Verdict {
    const NONE: Verdict = Verdict {
        colour: None,
        shape: None,
        shape_score: 0.0,
    };
}

fn dist(a: [f64; 3], b: [f64; 3]) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Smallest colour distance from the background that counts as an object.
const MIN_CONTRAST: f64 = 40.0;
/// Fewest object pixels (at ≥ 50 % coverage) that make a clear object.
const MIN_PIXELS: usize = 12;

/// Judges one image. A picture smaller than 3×3 has no inside to judge: no verdict.
pub fn judge(img: &RgbImage) -> Verdict {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w < 3 || h < 3 {
        return Verdict::NONE;
    }
    let px = |x: usize, y: usize| -> [f64; 3] {
        let p = img.get_pixel(x as u32, y as u32).0;
        [p[0] as f64, p[1] as f64, p[2] as f64]
    };
    // Background: the per-channel median of the one-pixel border.
    let border: Vec<[f64; 3]> = (0..w)
        .flat_map(|x| [(x, 0), (x, h - 1)])
        .chain((1..h - 1).flat_map(|y| [(0, y), (w - 1, y)]))
        .map(|(x, y)| px(x, y))
        .collect();
    let bg: [f64; 3] = std::array::from_fn(|c| median(border.iter().map(|p| p[c]).collect()));
    let d: Vec<f64> = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .map(|(x, y)| dist(px(x, y), bg))
        .collect();
    let dmax = d.iter().cloned().fold(0.0, f64::max);
    if dmax < MIN_CONTRAST {
        return Verdict::NONE;
    }
    // Colour: the mean of the object's core, matched to the palette.
    let core: Vec<usize> = (0..w * h).filter(|&i| d[i] >= 0.8 * dmax).collect();
    let mean: [f64; 3] = std::array::from_fn(|c| {
        core.iter().map(|&i| px(i % w, i / w)[c]).sum::<f64>() / core.len() as f64
    });
    let (colour, fg) = COLOURS
        .iter()
        .enumerate()
        .map(|(i, (_, rgb))| (i, [rgb[0] as f64, rgb[1] as f64, rgb[2] as f64]))
        .min_by(|a, b| dist(mean, a.1).total_cmp(&dist(mean, b.1)))
        .expect("palette is not empty");
    // Coverage of each pixel: how far it is from the background towards the object colour.
    let full = dist(fg, bg).max(MIN_CONTRAST);
    let cov: Vec<f64> = d.iter().map(|&v| (v / full).clamp(0.0, 1.0)).collect();
    let mask: Vec<usize> = (0..w * h).filter(|&i| cov[i] >= 0.5).collect();
    if mask.len() < MIN_PIXELS {
        return Verdict::NONE;
    }
    let (mut x0, mut x1, mut y0, mut y1) = (w, 0, h, 0);
    for &i in &mask {
        let (x, y) = (i % w, i / w);
        x0 = x0.min(x);
        x1 = x1.max(x + 1);
        y0 = y0.min(y);
        y1 = y1.max(y + 1);
    }
    let mut best = (0usize, f64::MIN);
    for (si, shape) in Shape::ALL.iter().enumerate() {
        // Fit the template to the box, allowing half a pixel either way on each edge.
        let mut score = f64::MIN;
        for (dl, dr) in [
            (0.0, 0.0),
            (-0.5, 0.5),
            (0.5, -0.5),
            (-0.5, 0.0),
            (0.0, 0.5),
        ] {
            let bx = (x0 as f64 + dl, x1 as f64 + dr);
            let by = (y0 as f64 + dl, y1 as f64 + dr);
            score = score.max(overlap(*shape, &cov, w, h, bx, by));
        }
        if score > best.1 {
            best = (si, score);
        }
    }
    Verdict {
        colour: Some(colour),
        shape: Some(best.0),
        shape_score: best.1,
    }
}

/// Soft IoU between observed coverage and `shape` drawn (4×4 supersampled) in the box.
fn overlap(shape: Shape, cov: &[f64], w: usize, h: usize, bx: (f64, f64), by: (f64, f64)) -> f64 {
    let (sw, sh) = (bx.1 - bx.0, by.1 - by.0);
    if sw <= 1.0 || sh <= 1.0 {
        return 0.0;
    }
    let (mut inter, mut union) = (0.0, 0.0);
    let lo_y = (by.0.floor() as isize - 1).max(0) as usize;
    let hi_y = ((by.1.ceil() as usize) + 1).min(h);
    let lo_x = (bx.0.floor() as isize - 1).max(0) as usize;
    let hi_x = ((bx.1.ceil() as usize) + 1).min(w);
    let inside_box_total: f64 = cov.iter().sum();
    let mut inside_window = 0.0;
    for y in lo_y..hi_y {
        for x in lo_x..hi_x {
            let mut hits = 0;
            for sy in 0..4 {
                for sx in 0..4 {
                    let u = (x as f64 + (sx as f64 + 0.5) / 4.0 - bx.0) / sw;
                    let v = (y as f64 + (sy as f64 + 0.5) / 4.0 - by.0) / sh;
                    hits += shape.contains(u, v) as u32;
                }
            }
            let t = hits as f64 / 16.0;
            let o = cov[y * w + x];
            inside_window += o;
            inter += t.min(o);
            union += t.max(o);
        }
    }
    // Coverage outside the window counts against every template alike.
    union += inside_box_total - inside_window;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

/// Accuracy over judged samples.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tally {
    pub total: usize,
    pub colour_correct: usize,
    pub shape_correct: usize,
    pub both_correct: usize,
    pub no_clear_object: usize,
}

impl Tally {
    /// Records one verdict against the intended (colour, shape); a None means the prompt left
    /// that word out, so any answer is right.
    pub fn add(&mut self, v: &Verdict, colour: Option<usize>, shape: Option<usize>) {
        self.total += 1;
        if v.colour.is_none() {
            self.no_clear_object += 1;
            return;
        }
        let c = colour.is_none_or(|c| v.colour == Some(c));
        let s = shape.is_none_or(|s| v.shape == Some(s));
        self.colour_correct += c as usize;
        self.shape_correct += s as usize;
        self.both_correct += (c && s) as usize;
    }

    fn frac(n: usize, d: usize) -> f64 {
        if d == 0 {
            0.0
        } else {
            n as f64 / d as f64
        }
    }

    pub fn colour_accuracy(&self) -> f64 {
        Self::frac(self.colour_correct, self.total)
    }
    pub fn shape_accuracy(&self) -> f64 {
        Self::frac(self.shape_correct, self.total)
    }
    pub fn both_accuracy(&self) -> f64 {
        Self::frac(self.both_correct, self.total)
    }
}
