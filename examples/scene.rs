//! Draws `assets/scene.png`, the picture the README diffuses: a sunset over hills and a lake,
//! computed pixel by pixel (4×4 supersampled), so the project owns every pixel.
//!
//! Run: `cargo run --release --example scene -- assets/scene.png`; with a second path it also
//! writes the inpainting mask of the README (white over the sun and its glow, black elsewhere):
//! `cargo run --release --example scene -- assets/scene.png assets/scene-sun-mask.png`

use image::{Rgb, RgbImage};

const W: u32 = 256;
const H: u32 = 256;
const SS: u32 = 4;
/// The sun's centre and radius, in [0, 1]².
const SUN: (f64, f64, f64) = (0.62, 0.50, 0.11);

fn mix(a: [f64; 3], b: [f64; 3], t: f64) -> [f64; 3] {
    let t = t.clamp(0.0, 1.0);
    std::array::from_fn(|i| a[i] + (b[i] - a[i]) * t)
}

/// The colour at a point (x, y) in [0, 1]², y downwards.
fn shade(x: f64, y: f64) -> [f64; 3] {
    let horizon = 0.62;
    // Sky: deep blue at the top to orange at the horizon.
    let mut c = mix(
        [30.0, 40.0, 110.0],
        [250.0, 150.0, 70.0],
        (y / horizon).powf(1.6),
    );
    // Sun with a soft glow.
    let (sx, sy, sr) = SUN;
    let d = ((x - sx).powi(2) + (y - sy).powi(2)).sqrt();
    c = mix(
        c,
        [255.0, 230.0, 140.0],
        (1.0 - (d - sr) / 0.12).clamp(0.0, 1.0) * 0.5,
    );
    if d < sr {
        c = [255.0, 236.0, 160.0];
    }
    // Far hills, then near hills, each a sum of sines.
    let far = 0.50 + 0.05 * (x * 9.0).sin() + 0.03 * (x * 23.0 + 1.0).sin();
    if y > far && y < horizon {
        c = mix([110.0, 70.0, 120.0], [70.0, 50.0, 90.0], (y - far) / 0.1);
    }
    let near = 0.57 + 0.04 * (x * 5.0 + 2.0).sin() + 0.015 * (x * 31.0).sin();
    if y > near && y < horizon {
        c = [40.0, 70.0, 60.0];
    }
    // Lake: the sky mirrored and darkened, with ripples.
    if y >= horizon {
        let my = 2.0 * horizon - y + 0.004 * (y * 180.0).sin();
        let sky = shade(x, my.clamp(0.0, horizon - 1e-6));
        c = mix(sky, [20.0, 40.0, 80.0], 0.35 + (y - horizon) * 0.8);
    }
    // A small boat on the water.
    let (bx, by) = (0.30, 0.78);
    if y > by && y < by + 0.025 && (x - bx).abs() < 0.07 - (y - by) * 1.2 {
        c = [30.0, 25.0, 25.0];
    }
    if (x - bx).abs() < 0.004 && y > by - 0.09 && y <= by {
        c = [30.0, 25.0, 25.0];
    }
    if y > by - 0.085
        && y < by - 0.01
        && x > bx + 0.006
        && x < bx + 0.006 + (y - (by - 0.085)) * 0.7
    {
        c = [240.0, 235.0, 220.0];
    }
    c
}

fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "assets/scene.png".into());
    let img = RgbImage::from_fn(W, H, |px, py| {
        let mut acc = [0.0; 3];
        for sy in 0..SS {
            for sx in 0..SS {
                let x = (px as f64 + (sx as f64 + 0.5) / SS as f64) / W as f64;
                let y = (py as f64 + (sy as f64 + 0.5) / SS as f64) / H as f64;
                let c = shade(x, y);
                (0..3).for_each(|i| acc[i] += c[i]);
            }
        }
        let n = (SS * SS) as f64;
        Rgb(std::array::from_fn(|i| {
            (acc[i] / n).round().clamp(0.0, 255.0) as u8
        }))
    });
    img.save(&path).expect("write the scene");
    println!("wrote {path}");
    if let Some(mask_path) = std::env::args().nth(2) {
        let (sx, sy, sr) = SUN;
        let mask = image::GrayImage::from_fn(W, H, |px, py| {
            let (x, y) = ((px as f64 + 0.5) / W as f64, (py as f64 + 0.5) / H as f64);
            let inside = ((x - sx).powi(2) + (y - sy).powi(2)).sqrt() < sr + 0.05;
            image::Luma([if inside { 255 } else { 0 }])
        });
        mask.save(&mask_path).expect("write the mask");
        println!("wrote {mask_path}");
    }
}
