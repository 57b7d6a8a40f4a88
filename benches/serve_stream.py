#!/usr/bin/env python3
"""Measures a running `diffuse serve`: time to the first streamed step and steps streamed per
second for one image at the model's defaults (prompt: the model's example, seed 0).

Usage: python3 benches/serve_stream.py http://127.0.0.1:7860 [RUNS]
Only the standard library is used; the numbers are wall-clock times seen by the client.
"""
import json
import sys
import time
import urllib.request


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def one_run(base, prompt):
    t0 = time.perf_counter()
    job = post(f"{base}/api/generate", {"prompt": prompt, "seed": 0})
    first = None
    steps = 0
    with urllib.request.urlopen(f"{base}/api/jobs/{job['id']}/events") as r:
        event = None
        for raw in r:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "step":
                steps += 1
                if first is None:
                    first = time.perf_counter() - t0
            elif line.startswith("data:") and event == "done":
                break
    total = time.perf_counter() - t0
    return first, steps, total


def main():
    base = sys.argv[1].rstrip("/")
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    with urllib.request.urlopen(f"{base}/api/model") as r:
        model = json.load(r)
    results = [one_run(base, model["example"]) for _ in range(runs)]
    for first, steps, total in results:
        print(f"first step after {first * 1e3:.0f} ms; {steps} steps in {total:.2f} s "
              f"= {steps / total:.1f} steps/s")
    firsts = sorted(r[0] for r in results)
    rates = sorted(r[1] / r[2] for r in results)
    print(f"{model['name']}: '{model['example']}', defaults {model['defaults']}, {runs} runs: "
          f"median first step {firsts[len(firsts) // 2] * 1e3:.0f} ms, "
          f"median {rates[len(rates) // 2]:.1f} steps/s")


if __name__ == "__main__":
    main()
