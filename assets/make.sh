#!/usr/bin/env bash
# Re-renders the pictures the README shows. Run from the repository root:
#   bash assets/make.sh
# Each picture is written by the exact `diffuse` command the README shows under it (with
# `diffuse` spelled $bin); tests/readme_pictures.rs checks that every README picture command
# appears here and runs each one at a tiny setting.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/diffuse
pics=assets/readme

# assets/scene.png and the mask over its sun are drawn by a small program of ours
# (examples/scene.rs).
cargo run --release --quiet --example scene -- assets/scene.png assets/scene-sun-mask.png

rm -rf out/cat out/cat-attention out/cat-above out/computer-above out/cat-seeds out/cat-guidance.png
rm -rf out/inpaint out/repaint out/interpolate out/interpolate-seeds out/invert out/reconstruct
rm -rf out/red-circle out/forward out/markov out/schedules.png out/prompts.png out/seeds \
  out/compare-guidance.png out/compare-samplers.png
# The three slow pictures can be kept as committed: KEEP_SWEEP=1 (the sampler sweep, about 12
# minutes on 2 cores), KEEP_EVAL=1 (the held-out samples, about 20 minutes) and
# KEEP_COPY_RATE=1 (the copy rate, about 9 minutes) leave assets/readme's copies as they are.
[ -n "${KEEP_SWEEP:-}" ] || rm -f out/sweep.png
set -x

# The text-to-image model (the default): "a cat with a computer" step by step.
$bin generate --prompt "a cat with a computer" --seed 1 --num-images 1 --out out/cat --quiet
cp out/cat/strip.png $pics/cat-strip.png
cp out/cat/denoising.gif $pics/cat.gif

# The held-out pairs, and the samples of them the evaluation draws (8 per prompt, about 20
# minutes on 2 cores; KEEP_EVAL=1 keeps the committed picture). The table it prints is the one
# in the README and the model card.
$bin data emoji --held-out > /dev/null
if [ -z "${KEEP_EVAL:-}" ]; then
  rm -f out/held-out.png
  $bin eval --samples-per-prompt 8 --grid out/held-out.png --grid-prompts held-out --quiet
  cp out/held-out.png $pics/held-out.png
fi

# Where "cat" and "computer" land: cross-attention maps.
$bin generate --prompt "a cat with a computer" --seed 1 --num-images 1 --attention-maps --frames 2 --out out/cat-attention --quiet
cp out/cat-attention/attention/grid.png $pics/cat-attention.png

# Word order: the relation both ways round, from the same noise.
$bin generate --prompt "a cat above a computer" --num-images 4 --seed 5 --frames 2 --out out/cat-above --quiet
cp out/cat-above/grid.png $pics/cat-above.png
$bin generate --prompt "a computer above a cat" --num-images 4 --seed 5 --frames 2 --out out/computer-above --quiet
cp out/computer-above/grid.png $pics/computer-above.png

# Eight seeds of one prompt, and guidance 0 / 1 / 3 / 7 from the same noise.
$bin generate --prompt "a cat with a computer" --num-images 8 --seed 7 --frames 2 --out out/cat-seeds --quiet
cp out/cat-seeds/grid.png $pics/cat-seeds.png
$bin compare --prompt "a cat with a computer" --guidance 0,1,3,7 --seed 3 --out out/cat-guidance.png --quiet
cp out/cat-guidance.png $pics/cat-guidance.png

# Reverse diffusion of "a red circle" with the shapes model: strip + GIF.
$bin generate --model shapes32 --prompt "a red circle" --seed 1 --out out/red-circle --quiet
cp out/red-circle/strip.png $pics/generate-strip.png
cp out/red-circle/denoising.gif $pics/generate.gif

# Forward diffusion of the scene: strip + GIF.
$bin noise --image assets/scene.png --out out/forward --size 128x128 --frames 25 --seed 0 --quiet
cp out/forward/strip.png $pics/forward-strip.png
cp out/forward/noising.gif $pics/forward.gif

# The same, run as a Markov chain with fresh noise each step.
$bin noise --image assets/scene.png --out out/markov --size 128x128 --frames 25 --markov --seed 0 --quiet
cp out/markov/strip.png $pics/forward-markov-strip.png

# The four schedules: ᾱ_t and log-SNR.
$bin schedule --beta-schedule all --plot out/schedules.png > /dev/null
cp out/schedules.png $pics/schedules.png

# All 36 prompts, one sample each.
$bin eval --model shapes32 --samples-per-prompt 1 --seed 0 --grid out/prompts.png --quiet > /dev/null
cp out/prompts.png $pics/prompts.png

# One prompt, eight samples from eight noise draws.
$bin generate --model shapes32 --prompt "a blue star" --num-images 8 --seed 7 --frames 2 --out out/seeds --quiet
cp out/seeds/grid.png $pics/seeds.png

# One prompt across guidance scales, and the three samplers at 10 steps, from the same noise.
$bin compare --model shapes32 --prompt "a green triangle" --guidance 0,1,3,7 --seed 3 --out out/compare-guidance.png --quiet
cp out/compare-guidance.png $pics/compare-guidance.png
$bin compare --model shapes32 --prompt "a yellow diamond" --sampler ddpm,ddim,dpm++2m --steps 10 --seed 5 --out out/compare-samplers.png --quiet
cp out/compare-samplers.png $pics/compare-samplers.png

# The judge's accuracy against sampling steps for each sampler (36 prompts x 8 samples).
if [ -z "${KEEP_SWEEP:-}" ]; then
  $bin eval --model shapes32 --sweep out/sweep.png --samples-per-prompt 8 --quiet
  cp out/sweep.png $pics/sweep.png
fi

# The loss curve is drawn by the training run itself (its command is in the README and in
# models/runs/shapes32/commands.txt); training again would take hours, so copy the committed one.
cp models/runs/shapes32/loss.png $pics/loss.png

# Inpainting the sun of the scene, with the replace method and with RePaint.
$bin inpaint --model shapes32 --image assets/scene.png --mask assets/scene-sun-mask.png --prompt "a red square" --seed 1 --out out/inpaint --quiet
cp out/inpaint/strip.png $pics/inpaint-strip.png
$bin inpaint --model shapes32 --image assets/scene.png --mask assets/scene-sun-mask.png --prompt "a red square" --method repaint --seed 1 --frames 8 --out out/repaint --quiet
cp out/repaint/strip.png $pics/repaint-strip.png

# Interpolation between two seeds, then between two prompts (and seeds).
$bin interpolate --model shapes32 --prompt "a red circle" --seed 1 --seed-to 2 --frames 8 --out out/interpolate-seeds --quiet
cp out/interpolate-seeds/strip.png $pics/interpolate-seeds.png
$bin interpolate --model shapes32 --prompt "a red circle" --prompt-to "a blue square" --seed 1 --seed-to 2 --frames 8 --out out/interpolate --quiet
cp out/interpolate/strip.png $pics/interpolate-prompts.png

# DDIM inversion of the scene, and sampling its noise back.
$bin invert --model shapes32 --image assets/scene.png --frames 8 --out out/invert --quiet
cp out/invert/strip.png $pics/invert-strip.png
$bin generate --model shapes32 --from-noise out/invert/noise.safetensors --prompt "" --num-images 1 --sampler ddim --steps 50 --guidance 1 --no-clip-sample --no-thresholding --frames 8 --out out/reconstruct --quiet
cp out/reconstruct/strip.png $pics/reconstruct-strip.png

# Latent diffusion's autoencoder: an unseen emoji scene, its 4 latent channels and its
# reconstruction.
rm -rf out/scenes99 out/autoencode.png
$bin data emoji --count 4 --seed 99 --out out/scenes99 --quiet
$bin autoencode --model models/ae64.safetensors --image out/scenes99/000000.png --out out/autoencode.png --quiet
cp out/autoencode.png $pics/autoencode.png

# Is it new? Samples next to their nearest training scenes (a held-out pair and a seen one),
# and the copy rate over 200 samples (about 9 minutes on 2 cores).
rm -rf out/cat-nearest out/dog-tree-nearest out/copy-rate.png
$bin generate --prompt "a cat with a computer" --seed 1 --num-images 2 --nearest 3 --frames 2 --out out/cat-nearest --quiet
cp out/cat-nearest/nearest.png $pics/cat-nearest.png
$bin generate --prompt "a dog and a tree" --seed 1 --num-images 2 --nearest 3 --frames 2 --out out/dog-tree-nearest --quiet
cp out/dog-tree-nearest/nearest.png $pics/dog-tree-nearest.png
if [ -z "${KEEP_COPY_RATE:-}" ]; then
  $bin nearest --copy-rate 200 --out out/copy-rate.png --quiet
  cp out/copy-rate.png $pics/copy-rate.png
fi
