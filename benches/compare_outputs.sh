#!/usr/bin/env bash
# Compares the outputs of two diffuse binaries for fixed seeds (sampling, noising, eval and a
# few training steps), file by file (SHA-256),
# run.json and index.html aside (they hold timings). Used to check that a refactor keeps outputs
# byte-identical:
#   git worktree add /tmp/old <commit> && (cd /tmp/old && cargo build --release)
#   benches/compare_outputs.sh /tmp/old/target/release/diffuse target/release/diffuse
# Run from the project root (it reads assets/scene.png).
set -euo pipefail
run() {
  local bin=$1 o=$2
  rm -rf "$o"; mkdir -p "$o"
  "$bin" -q --threads 2 generate --prompt "a cat with a computer" --seed 1 --out "$o/emoji" --save-tensors --num-images 2 --steps 10 >/dev/null
  "$bin" -q --threads 2 generate --prompt "a frog above a guitar" --seed 2 --sampler ddim --steps 6 --num-images 3 --frames 2 --out "$o/emoji2" >/dev/null
  "$bin" -q --threads 2 generate --model shapes32 --prompt "a red circle" --seed 1 --out "$o/gen" --save-tensors --num-images 2 --steps 10 >/dev/null
  "$bin" -q --threads 2 generate --model shapes32 --prompt "a blue star" --seed 7 --sampler dpm++2m --steps 8 --frames 4 --out "$o/gen2" --guidance 5 >/dev/null
  "$bin" -q --threads 2 img2img --model shapes32 --image assets/scene.png --prompt "green" --seed 3 --steps 10 --out "$o/i2i" >/dev/null
  "$bin" -q --threads 2 inpaint --model shapes32 --image assets/scene.png --mask assets/scene-sun-mask.png --prompt "a red square" --seed 1 --steps 10 --out "$o/inpaint" >/dev/null
  "$bin" -q --threads 2 inpaint --model shapes32 --image assets/scene.png --mask assets/scene-sun-mask.png --prompt "a red square" --method repaint --jump-length 3 --jump-n-sample 2 --seed 1 --steps 10 --frames 8 --out "$o/repaint" >/dev/null
  "$bin" -q --threads 2 generate --prompt "a dog and a tree" --seed 4 --steps 6 --num-images 1 --attention-maps --attention-steps 3 --out "$o/attn" >/dev/null
  "$bin" -q --threads 2 compare --model shapes32 --prompt "a green triangle" --guidance 0,1,3 --steps 6 --seed 3 --out "$o/cmp-guidance.png" >/dev/null
  "$bin" -q --threads 2 compare --model shapes32 --prompt "a yellow diamond" --sampler ddpm,ddim,dpm++2m --steps 6 --seed 5 --out "$o/cmp-samplers.png" >/dev/null
  "$bin" -q --threads 2 compare --prompt "a cat" --steps 3,6 --seed 2 --out "$o/cmp-steps.png" >/dev/null
  "$bin" -q --threads 2 noise --image assets/scene.png --out "$o/noise" --size 64x64 --frames 10 --seed 0 --save-tensors >/dev/null
  "$bin" -q --threads 2 noise --image assets/scene.png --out "$o/markov" --size 32x32 --frames 5 --markov --seed 0 >/dev/null
  "$bin" -q schedule --beta-schedule all --plot "$o/sched.png" | grep -v "plot written" > "$o/sched.txt"
  "$bin" -q schedule --beta-schedule cosine --json > "$o/sched.json"
  "$bin" -q data shapes --count 10 --out "$o/shapes" >/dev/null
  "$bin" -q --threads 2 eval --model shapes32 --samples-per-prompt 1 --steps 5 --grid "$o/evalgrid.png" | sed 's/ ([0-9]* s)$//' > "$o/eval.txt"
  # Training: the model file only (the run folder holds wall times and the binary's path).
  "$bin" -q --threads 2 train --data emoji --out "$o/train/emoji.safetensors" --run-dir "$o/train/run" --steps 3 --batch-size 4 --checkpoint-every 3 --preview-steps 2 >/dev/null
  "$bin" -q --threads 2 train --out "$o/train/shapes.safetensors" --run-dir "$o/train/run2" --steps 3 --batch-size 8 --checkpoint-every 3 --preview-steps 2 >/dev/null
  rm -rf "$o/train/run" "$o/train/run2"
  (cd "$o" && find . -type f ! -name run.json ! -name index.html -print0 | sort -z | xargs -0 sha256sum)
}
dir=$(mktemp -d)
# Both binaries write to the same folder, which the index pages name.
run "$1" "$dir/o" > "$dir/a.sums"
run "$2" "$dir/o" > "$dir/b.sums"
if diff "$dir/a.sums" "$dir/b.sums"; then
  echo "identical: $(wc -l < "$dir/a.sums") files"
fi
rm -rf "$dir"
