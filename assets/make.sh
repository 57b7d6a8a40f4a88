#!/usr/bin/env bash
# Re-renders the pictures the README shows. Run from the repository root:
#   bash assets/make.sh
# Each picture is written by the exact `diffuse` command echoed before it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/diffuse
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# assets/scene.png itself is drawn by a small program of ours (examples/scene.rs).
cargo run --release --quiet --example scene -- assets/scene.png

# Forward diffusion of the scene: strip + GIF.
set -x
$bin noise --image assets/scene.png --out "$tmp/forward" --size 128x128 --frames 25 --seed 0 --quiet
cp "$tmp/forward/strip.png" assets/readme/forward-strip.png
cp "$tmp/forward/noising.gif" assets/readme/forward.gif

# The same, run as a Markov chain with fresh noise each step.
$bin noise --image assets/scene.png --out "$tmp/markov" --size 128x128 --frames 25 --markov --seed 0 --quiet
cp "$tmp/markov/strip.png" assets/readme/forward-markov-strip.png

# Reverse diffusion of "a red circle" with the built-in model.
$bin generate --prompt "a red circle" --seed 1 --out "$tmp/red-circle" --quiet
cp "$tmp/red-circle/strip.png" assets/readme/generate-strip.png
cp "$tmp/red-circle/denoising.gif" assets/readme/generate.gif

# The four schedules: ᾱ_t and log-SNR.
$bin schedule --beta-schedule all --plot assets/readme/schedules.png --force > /dev/null
