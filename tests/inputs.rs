//! Input pictures and schedule options, each case running the real binary: pictures read
//! from a pipe, pictures too large to decode (refused with their size and what to do), and
//! schedule options that a schedule does not use.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{assert_fails_with, diffuse, s};

/// Runs `diffuse args` with `input` on its standard input.
fn diffuse_piped(args: &[&str], input: &[u8]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_diffuse"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn a_picture_can_come_from_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let scene = std::fs::read(common::SCENE).unwrap();
    let out = dir.path().join("piped");
    let args = [
        "noise",
        "--image",
        "/dev/stdin",
        "--frames",
        "3",
        "--out",
        s(&out),
        "--quiet",
    ];
    let o = diffuse_piped(&args, &scene);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("strip.png").exists());
    let out = dir.path().join("empty");
    let args = [
        "noise",
        "--image",
        "/dev/stdin",
        "--out",
        s(&out),
        "--quiet",
    ];
    assert_fails_with(
        &diffuse_piped(&args, b""),
        "'/dev/stdin': the stream was empty",
    );
}

/// CRC-32 (IEEE), as PNG chunks carry it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG that declares `w`×`h` RGB pixels with almost no pixel data: the size alone must be
/// refused before decoding starts.
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB, no interlace
    png.extend((13u32).to_be_bytes());
    png.extend(&ihdr);
    png.extend(crc32(&ihdr).to_be_bytes());
    let idat = b"IDAT\x78\x9c\x03\x00\x00\x00\x00\x01"; // a tiny zlib stream
    png.extend(((idat.len() - 4) as u32).to_be_bytes());
    png.extend(idat);
    png.extend(crc32(idat).to_be_bytes());
    png.extend(0u32.to_be_bytes());
    png.extend(b"IEND");
    png.extend(crc32(b"IEND").to_be_bytes());
    png
}

#[test]
fn a_picture_too_large_to_decode_says_its_size_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.png");
    std::fs::write(&big, png_header_only(14000, 14000)).unwrap();
    let out = dir.path().join("out");
    let o = diffuse(&["noise", "--image", s(&big), "--out", s(&out)]);
    assert_fails_with(&o, "14000x14000 pixels take 560 MB decoded, more than the 512 MB diffuse decodes; scale it down first");
    assert!(!out.exists());
}

#[test]
fn cosine_ignores_the_beta_range_it_does_not_use() {
    let o = diffuse(&[
        "schedule",
        "--beta-schedule",
        "cosine",
        "--beta-start",
        "0.5",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("--beta-start and --beta-end are not used"),
        "{text}"
    );
    // The schedules that use the range still check it.
    let o = diffuse(&[
        "schedule",
        "--beta-schedule",
        "linear",
        "--beta-start",
        "0.5",
    ]);
    assert_fails_with(&o, "--beta-start 0.5 must be smaller than --beta-end 0.02");
}

#[test]
fn a_non_utf8_output_folder_is_recorded_lossily() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let mut name = dir.path().as_os_str().as_bytes().to_vec();
    name.extend(b"/out\xff");
    let out = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&name));
    let runs = common::tiny_folder_runs();
    for (i, args) in runs.iter().enumerate() {
        let mut folder = out.clone().into_os_string();
        folder.push(i.to_string());
        let o = Command::new(env!("CARGO_BIN_EXE_diffuse"))
            .args(args)
            .arg("--out")
            .arg(&folder)
            .arg("--quiet")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let json = common::run_json(std::path::Path::new(&folder));
        assert!(
            json["out"].as_str().unwrap().contains("out\u{fffd}"),
            "{args:?}: {}",
            json["out"]
        );
    }
}
