#!/usr/bin/env python3
"""Measures what candle-core's gradient accumulation costs a training step (an experiment;
diffuse itself builds against crates.io's candle-core).

candle 0.11's `Tensor::backward` stores every gradient by adding it to a fresh `zeros_like`
tensor (`grads.or_insert(arg)` then `sum_grad.add(&grad)`): one zero fill and one full add
pass per graph input, even when that is the only contribution. This script copies
candle-core 0.11.1 out of the cargo registry and rewrites those sites to store the first
gradient as it is and add only later ones (`GradStore::accumulate`), so the effect can be
timed on a copy of the project:

    python3 benches/candle_accumulate_patch.py /tmp/cpatch
    git worktree add /tmp/patched HEAD
    printf '\\n[patch.crates-io]\\ncandle-core = { path = "/tmp/cpatch/candle-core" }\\n' \\
        >> /tmp/patched/Cargo.toml
    (cd /tmp/patched && cargo build --release --examples)
    benches/compare_outputs.sh target/release/diffuse /tmp/patched/target/release/diffuse
    /tmp/patched/target/release/examples/unet_timing train 32 4 emoji   # against ours
"""
import pathlib
import re
import shutil
import sys

VERSION = "candle-core-0.11.1"

ACCUMULATE = '''    /// Adds `grad` to the gradient stored for `tensor`, storing it as it is when there is
    /// none yet (no zero fill and no add for a first contribution).
    fn accumulate(&mut self, tensor: &Tensor, grad: &Tensor) -> Result<()> {
        match self.0.entry(tensor.id()) {
            Entry::Occupied(mut entry) => {
                let sum = entry.get().add(grad)?;
                entry.insert(sum);
            }
            Entry::Vacant(entry) => {
                let first = if grad.shape() == tensor.shape() {
                    grad.clone()
                } else {
                    tensor.zeros_like()?.add(grad)?
                };
                entry.insert(first);
            }
        }
        Ok(())
    }

'''


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: candle_accumulate_patch.py OUT_DIR")
    registry = pathlib.Path.home() / ".cargo" / "registry" / "src"
    sources = sorted(registry.glob(f"*/{VERSION}"))
    if not sources:
        sys.exit(f"{VERSION} is not in {registry}: run `cargo fetch` in the project first")
    out = pathlib.Path(sys.argv[1]) / "candle-core"
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(sources[0], out)
    path = out / "src" / "backprop.rs"
    text = path.read_text()
    # `let s = grads.or_insert(arg)?;` + `*s = s.add(&g)?` on the next line.
    site = re.compile(
        r"let (\w+) = grads\.or_insert\(([^)]*)\)\?;\n(\s*)\*\1 = \1\.add\((.*)\)\?(;?)$", re.M
    )

    def rewrite(m):
        grad = m.group(4).strip().removeprefix("&")
        grad = grad.replace(m.group(1) + ".dims()", m.group(2) + ".dims()")
        return f"grads.accumulate({m.group(2)}, &({grad}))?;"

    text, n = site.subn(rewrite, text)
    anchor = "    fn or_insert(&mut self, tensor: &Tensor) -> Result<&mut Tensor> {"
    if n == 0 or anchor not in text:
        sys.exit(f"{path}: the expected code was not found (another candle version?)")
    text = text.replace(anchor, ACCUMULATE + anchor)
    path.write_text(text)
    print(f"patched {n} sites in {path}")


if __name__ == "__main__":
    main()
