#!/usr/bin/env python3
"""Writes `vendor/candle-core`: candle-core 0.11.1 from the cargo registry, with one change to
its `backprop.rs`. `Cargo.toml`'s `[patch.crates-io]` builds diffuse against it.

candle 0.11's `Tensor::backward` stores every gradient by adding it to a fresh `zeros_like`
tensor (`grads.or_insert(arg)` then `sum_grad.add(&grad)`): one zero fill and one full add
pass per graph input, even when that is the only contribution. The zero fill runs on one
thread. This script rewrites those 44 sites to store the first gradient as it is and add only
later ones (`GradStore::accumulate`), the change proposed upstream in huggingface/candle#3822.
The values are the same (0 + g = g, except that a −0 gradient keeps its sign instead of
becoming +0), and diffuse's training stayed byte-identical (`benches/compare_outputs.sh`); an
emoji training step (`unet_timing train 32 4 emoji`) took 1,434 ms against 1,604 ms unpatched
(README, "Performance"). Drop the patch once a candle release includes the change.

    python3 benches/candle_accumulate_patch.py vendor

It reads candle-core 0.11.1 from `~/.cargo/registry/src`; with the `[patch]` in place cargo
no longer fetches it there, so comment the `[patch]` out and run `cargo fetch` first.

The copy leaves out candle-core's own tests, benches and examples, which diffuse never builds.
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
    skip = shutil.ignore_patterns("tests", "benches", "examples", ".cargo-ok", "Cargo.lock")
    shutil.copytree(sources[0], out, ignore=skip)
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
