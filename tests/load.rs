//! Reading pictures: every supported format and colour type, alpha over white, sizing.

use std::path::Path;

use candle_core::Device;
use diffuse::io::image::{load_image, LoadOptions, Size};
use image::{DynamicImage, ImageFormat, Luma, LumaA, Rgb, Rgba};

fn pixel(x: &candle_core::Tensor, c: usize, y: usize, xx: usize) -> f32 {
    x.get(c)
        .unwrap()
        .get(y)
        .unwrap()
        .get(xx)
        .unwrap()
        .to_scalar()
        .unwrap()
}

fn load(path: &Path) -> diffuse::io::image::LoadedImage {
    load_image(path, &LoadOptions::default(), &Device::Cpu).unwrap()
}

fn gradient() -> DynamicImage {
    DynamicImage::ImageRgb8(image::RgbImage::from_fn(20, 12, |x, y| {
        Rgb([(x * 12) as u8, (y * 20) as u8, 200])
    }))
}

#[test]
fn every_format_loads_at_its_own_size() {
    let tmp = tempfile::tempdir().unwrap();
    for (ext, fmt) in [
        ("png", ImageFormat::Png),
        ("jpg", ImageFormat::Jpeg),
        ("gif", ImageFormat::Gif),
        ("bmp", ImageFormat::Bmp),
        ("webp", ImageFormat::WebP),
        ("tiff", ImageFormat::Tiff),
    ] {
        let path = tmp.path().join(format!("g.{ext}"));
        let img = if fmt == ImageFormat::WebP || fmt == ImageFormat::Gif {
            DynamicImage::ImageRgba8(gradient().to_rgba8())
        } else {
            gradient()
        };
        img.save_with_format(&path, fmt).unwrap();
        let l = load(&path);
        assert_eq!(l.x0.dims(), &[3, 12, 20], "{ext}");
        assert_eq!(l.size, (20, 12));
        assert!(!l.downscaled);
        // Blue is 200 everywhere: 200/127.5 - 1 (lossy formats within a few levels).
        let tol = if matches!(fmt, ImageFormat::Jpeg | ImageFormat::Gif) {
            0.06
        } else {
            1e-6
        };
        let b = pixel(&l.x0, 2, 5, 5);
        assert!((b - (200.0 / 127.5 - 1.0)).abs() <= tol, "{ext}: blue {b}");
    }
}

#[test]
fn eight_bit_pixels_map_as_x_over_127_5_minus_1() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("g.png");
    gradient().save(&path).unwrap();
    let l = load(&path);
    for (x, y) in [(0, 0), (7, 3), (19, 11)] {
        assert_eq!(pixel(&l.x0, 0, y, x), (x * 12) as f32 / 127.5 - 1.0);
        assert_eq!(pixel(&l.x0, 1, y, x), (y * 20) as f32 / 127.5 - 1.0);
    }
}

#[test]
fn gray_gray_alpha_rgba_and_sixteen_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let gray = tmp.path().join("gray.png");
    DynamicImage::ImageLuma8(image::GrayImage::from_pixel(4, 4, Luma([51])))
        .save(&gray)
        .unwrap();
    let l = load(&gray);
    for c in 0..3 {
        assert_eq!(pixel(&l.x0, c, 1, 1), 51.0 / 127.5 - 1.0);
    }

    // Transparent pixels become white; half-transparent black becomes mid-grey.
    let ga = tmp.path().join("ga.png");
    let img = image::ImageBuffer::from_fn(2, 1, |x, _| {
        if x == 0 {
            LumaA([0u8, 0])
        } else {
            LumaA([0u8, 255])
        }
    });
    DynamicImage::ImageLumaA8(img).save(&ga).unwrap();
    let l = load(&ga);
    assert_eq!(pixel(&l.x0, 0, 0, 0), 1.0);
    assert_eq!(pixel(&l.x0, 0, 0, 1), -1.0);

    let rgba = tmp.path().join("rgba.png");
    let img = image::RgbaImage::from_pixel(3, 3, Rgba([0, 0, 0, 128]));
    DynamicImage::ImageRgba8(img).save(&rgba).unwrap();
    let l = load(&rgba);
    let expect = (255.0f32 * (1.0 - 128.0 / 255.0)).round() / 127.5 - 1.0;
    assert_eq!(pixel(&l.x0, 1, 2, 2), expect);

    let deep = tmp.path().join("deep.png");
    let img = image::ImageBuffer::from_pixel(5, 2, Rgb([65535u16, 0, 32768]));
    DynamicImage::ImageRgb16(img).save(&deep).unwrap();
    let l = load(&deep);
    assert_eq!(l.x0.dims(), &[3, 2, 5]);
    assert!((pixel(&l.x0, 0, 0, 0) - 1.0).abs() < 1e-6);
    assert!((pixel(&l.x0, 1, 0, 0) + 1.0).abs() < 1e-6);
    assert!((pixel(&l.x0, 2, 0, 0) - (32768.0 / 65535.0 * 2.0 - 1.0)).abs() < 1e-5);
}

#[test]
fn large_pictures_are_scaled_down_and_size_is_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("wide.png");
    DynamicImage::ImageRgb8(image::RgbImage::from_pixel(2000, 500, Rgb([10, 20, 30])))
        .save(&path)
        .unwrap();
    let l = load(&path);
    assert!(l.downscaled);
    assert_eq!(l.original_size, (2000, 500));
    assert_eq!(l.size, (1024, 256));
    assert_eq!(l.x0.dims(), &[3, 256, 1024]);

    let opts = LoadOptions {
        max_side: 100,
        size: None,
    };
    assert_eq!(
        load_image(&path, &opts, &Device::Cpu).unwrap().size,
        (100, 25)
    );

    let opts = LoadOptions {
        max_side: 100,
        size: Some("64x48".parse().unwrap()),
    };
    let l = load_image(&path, &opts, &Device::Cpu).unwrap();
    assert_eq!(l.size, (64, 48));
    assert!(!l.downscaled);
}

#[test]
fn size_strings_are_checked() {
    assert_eq!(
        "32x16".parse::<Size>().unwrap(),
        Size {
            width: 32,
            height: 16
        }
    );
    for bad in ["0x10", "10x0", "abc", "10", "10x", "99999x2"] {
        assert!(bad.parse::<Size>().is_err(), "{bad} should be rejected");
    }
}
