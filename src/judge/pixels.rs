//! Pixel helpers of the judges: a Gaussian blur of interleaved f32 planes, and least-squares
//! planes through (x, y, value) points (the emoji judge's background model).

use image::RgbImage;

/// Blurs `c`-channel interleaved planes of `w`×`h` in place (separable Gaussian, edges
/// repeated).
pub fn blur(v: &mut [f32], w: usize, h: usize, c: usize, sigma: f32) {
    if sigma <= 0.0 {
        return;
    }
    let r = (3.0 * sigma).ceil() as i64;
    let k: Vec<f32> = (-r..=r)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f32 = k.iter().sum();
    let k: Vec<f32> = k.iter().map(|x| x / sum).collect();
    let pass = |v: &[f32], horizontal: bool| {
        let mut out = vec![0f32; v.len()];
        for y in 0..h as i64 {
            for x in 0..w as i64 {
                for (j, kj) in k.iter().enumerate() {
                    let d = j as i64 - r;
                    let (sx, sy) = if horizontal {
                        ((x + d).clamp(0, w as i64 - 1), y)
                    } else {
                        (x, (y + d).clamp(0, h as i64 - 1))
                    };
                    let (o, s) = (
                        (y * w as i64 + x) as usize * c,
                        (sy * w as i64 + sx) as usize * c,
                    );
                    for ch in 0..c {
                        out[o + ch] += kj * v[s + ch];
                    }
                }
            }
        }
        out
    };
    let t = pass(v, true);
    v.copy_from_slice(&pass(&t, false));
}

/// Least-squares plane `a + b·x + c·y` through the points (x, y, v).
pub fn fit_plane(points: &[(f64, f64, f64)]) -> [f64; 3] {
    // Normal equations of [1 x y]; a plain colour gives b = c = 0.
    let mut m = [[0f64; 3]; 3];
    let mut r = [0f64; 3];
    for &(x, y, v) in points {
        let f = [1.0, x, y];
        for i in 0..3 {
            r[i] += f[i] * v;
            for j in 0..3 {
                m[i][j] += f[i] * f[j];
            }
        }
    }
    solve3(m, r).unwrap_or([
        points.iter().map(|p| p.2).sum::<f64>() / points.len().max(1) as f64,
        0.0,
        0.0,
    ])
}

/// Solves a 3×3 system by Cramer's rule (None when singular).
pub fn solve3(m: [[f64; 3]; 3], r: [f64; 3]) -> Option<[f64; 3]> {
    let det = |a: [[f64; 3]; 3]| {
        a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1])
            - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
            + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0])
    };
    let d = det(m);
    if d.abs() < 1e-9 {
        return None;
    }
    let mut out = [0f64; 3];
    for (k, o) in out.iter_mut().enumerate() {
        let mut mk = m;
        for i in 0..3 {
            mk[i][k] = r[i];
        }
        *o = det(mk) / d;
    }
    Some(out)
}

/// The picture blurred by a Gaussian of `sigma` pixels (for testing the judge on soft
/// pictures).
pub fn blurred(img: &RgbImage, sigma: f32) -> RgbImage {
    let (w, h) = img.dimensions();
    let mut v: Vec<f32> = img.as_raw().iter().map(|&x| x as f32).collect();
    blur(&mut v, w as usize, h as usize, 3, sigma);
    let raw = v
        .iter()
        .map(|x| x.round().clamp(0.0, 255.0) as u8)
        .collect();
    RgbImage::from_raw(w, h, raw).expect("same size")
}
