//! The shapes dataset: 32×32 RGB images of one coloured shape on a plain grey background,
//! labelled (colour, shape). Procedural, infinite and deterministic: image `i` of seed `s` is
//! always the same, drawn on the CPU (in parallel with rayon) with 4×4 supersampling.

use image::{Rgb, RgbImage};
use rand::{Rng as _, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Image side in pixels.
pub const SIZE: u32 = 32;
/// Supersampling per axis for anti-aliasing.
const SS: u32 = 4;

/// The palette, in the vocabulary's colour order.
pub const COLOURS: [(&str, [u8; 3]); 6] = [
    ("red", [220, 50, 47]),
    ("orange", [245, 140, 30]),
    ("yellow", [240, 210, 40]),
    ("green", [50, 170, 70]),
    ("blue", [40, 100, 220]),
    ("purple", [140, 60, 190]),
];

/// The shapes, in the vocabulary's shape order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Circle,
    Square,
    Triangle,
    Diamond,
    Cross,
    Star,
}

impl Shape {
    pub const ALL: [Shape; 6] = [
        Shape::Circle,
        Shape::Square,
        Shape::Triangle,
        Shape::Diamond,
        Shape::Cross,
        Shape::Star,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Shape::Circle => "circle",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
            Shape::Diamond => "diamond",
            Shape::Cross => "cross",
            Shape::Star => "star",
        }
    }

    /// Whether the point (u, v) of the unit box (u right, v down) is inside the shape.
    pub fn contains(self, u: f64, v: f64) -> bool {
        if !(0.0..=1.0).contains(&u) || !(0.0..=1.0).contains(&v) {
            return false;
        }
        let (du, dv) = (u - 0.5, v - 0.5);
        match self {
            Shape::Circle => du * du + dv * dv <= 0.25,
            Shape::Square => true,
            // Apex at the top centre, base along the bottom edge.
            Shape::Triangle => du.abs() <= v / 2.0,
            // Vertices at the midpoints of the box's edges.
            Shape::Diamond => du.abs() + dv.abs() <= 0.5,
            // A plus sign whose arms are one third of the box wide.
            Shape::Cross => du.abs() <= 1.0 / 6.0 || dv.abs() <= 1.0 / 6.0,
            Shape::Star => point_in_polygon(&star_polygon(), u, v),
        }
    }
}

/// A five-pointed star, one point straight up, inner radius 0.45 of the outer, with its
/// bounding box mapped onto the unit box.
pub fn star_polygon() -> [(f64, f64); 10] {
    let mut pts = [(0.0, 0.0); 10];
    for (i, p) in pts.iter_mut().enumerate() {
        let r = if i % 2 == 0 { 1.0 } else { 0.45 };
        let a = -std::f64::consts::FRAC_PI_2 + i as f64 * std::f64::consts::PI / 5.0;
        *p = (r * a.cos(), r * a.sin());
    }
    let (minx, maxx) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (miny, maxy) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    pts.map(|(x, y)| ((x - minx) / (maxx - minx), (y - miny) / (maxy - miny)))
}

/// Even-odd rule.
fn point_in_polygon(poly: &[(f64, f64)], x: f64, y: f64) -> bool {
    let mut inside = false;
    let mut j = poly.len() - 1;
    for i in 0..poly.len() {
        let (xi, yi) = poly[i];
        let (xj, yj) = poly[j];
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// Everything that defines one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShapeSpec {
    /// Index into [`COLOURS`].
    pub colour: usize,
    /// Index into [`Shape::ALL`].
    pub shape: usize,
    /// Side of the square bounding box, 12–26 px.
    pub side: u32,
    /// Top-left corner of the box; the box stays ≥ 1 px inside the canvas.
    pub x0: u32,
    pub y0: u32,
    /// Background grey level, 10–245.
    pub background: u8,
}

impl ShapeSpec {
    /// The spec of image `index` in the dataset of `seed`.
    pub fn sample(seed: u64, index: u64) -> Self {
        // One independent stream per image, so any image can be drawn alone.
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(index);
        let side = rng.random_range(12..=26);
        Self {
            colour: rng.random_range(0..COLOURS.len()),
            shape: rng.random_range(0..Shape::ALL.len()),
            side,
            x0: rng.random_range(1..=SIZE - 1 - side),
            y0: rng.random_range(1..=SIZE - 1 - side),
            background: rng.random_range(10..=245),
        }
    }

    /// The label words, e.g. ("red", "circle").
    pub fn label(&self) -> (&'static str, &'static str) {
        (COLOURS[self.colour].0, Shape::ALL[self.shape].name())
    }

    /// Renders the image with 4×4 supersampled coverage.
    pub fn render(&self) -> RgbImage {
        let shape = Shape::ALL[self.shape];
        let fg = COLOURS[self.colour].1;
        let bg = self.background as f64;
        let s = self.side as f64;
        RgbImage::from_fn(SIZE, SIZE, |px, py| {
            let mut hits = 0u32;
            for sy in 0..SS {
                for sx in 0..SS {
                    let x = px as f64 + (sx as f64 + 0.5) / SS as f64;
                    let y = py as f64 + (sy as f64 + 0.5) / SS as f64;
                    let u = (x - self.x0 as f64) / s;
                    let v = (y - self.y0 as f64) / s;
                    hits += shape.contains(u, v) as u32;
                }
            }
            let cov = hits as f64 / (SS * SS) as f64;
            Rgb(std::array::from_fn(|c| {
                (bg * (1.0 - cov) + fg[c] as f64 * cov).round() as u8
            }))
        })
    }
}

/// Renders images `start..start+count` of the dataset of `seed`, in parallel.
pub fn render_range(seed: u64, start: u64, count: usize) -> Vec<(ShapeSpec, RgbImage)> {
    (0..count as u64)
        .into_par_iter()
        .map(|i| {
            let spec = ShapeSpec::sample(seed, start + i);
            (spec, spec.render())
        })
        .collect()
}
