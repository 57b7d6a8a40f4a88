//! The judge on fresh dataset images: near-perfect on clean data, graceful under noise,
//! and "no clear object" on blank or pure-noise images.

use diffuse::data::shapes;
use diffuse::judge::{judge, Tally};
use image::RgbImage;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

fn accuracy(noise_sigma: f64, n: usize) -> Tally {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let normal = Normal::new(0.0, noise_sigma * 127.5).unwrap();
    let mut tally = Tally::default();
    for (spec, img) in shapes::render_range(1234, 0, n) {
        let noisy = if noise_sigma > 0.0 {
            RgbImage::from_fn(32, 32, |x, y| {
                let p = img.get_pixel(x, y).0;
                image::Rgb(p.map(|v| {
                    (v as f64 + normal.sample(&mut rng))
                        .round()
                        .clamp(0.0, 255.0) as u8
                }))
            })
        } else {
            img
        };
        tally.add(&judge(&noisy), Some(spec.colour), Some(spec.shape));
    }
    tally
}

#[test]
fn judge_is_near_perfect_on_clean_images() {
    let t = accuracy(0.0, 1000);
    assert!(t.colour_accuracy() >= 0.999, "{t:?}");
    assert!(t.both_accuracy() >= 0.99, "{t:?}");
}

#[test]
fn judge_degrades_gracefully_under_noise() {
    let low = accuracy(0.05, 400);
    let mid = accuracy(0.15, 400);
    assert!(low.both_accuracy() >= 0.95, "{low:?}");
    assert!(mid.both_accuracy() >= 0.6, "{mid:?}");
    assert!(mid.both_accuracy() <= low.both_accuracy() + 0.01);
}

#[test]
fn blank_and_noise_images_have_no_clear_object() {
    let blank = RgbImage::from_pixel(32, 32, image::Rgb([120, 120, 120]));
    assert_eq!(judge(&blank).colour, None);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let normal = Normal::new(128.0f64, 4.0).unwrap();
    let faint = RgbImage::from_fn(32, 32, |_, _| {
        image::Rgb([0; 3].map(|_: u8| normal.sample(&mut rng).round() as u8))
    });
    assert_eq!(judge(&faint).shape, None);
}
