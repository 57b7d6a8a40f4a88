#!/usr/bin/env python3
"""How much of a run one core spends alone, and on what: reads `perf script` output of a
system-wide profile of a 2-core machine and, for every sample, looks at what the other core was
doing at the same moment (the nearest sample within 0.4 ms). A sample whose partner was idle
(the idle task, or a thread spinning for work) is serial time: work that left a core empty.

    perf record -a -F 2000 -o /tmp/perf.data target/release/examples/unet_timing train 32 4 emoji
    perf script -i /tmp/perf.data -F comm,tid,cpu,time,ip,sym > /tmp/perf.txt
    python3 benches/serial_time.py /tmp/perf.txt 2.0   # skip the first 2 s (set-up, first step)

It prints the share of time windows with one core idle and the functions the busy core was
running then. The README's 25.4 % (commit 0846087) and 8.4 % (commit f870540) for the
emoji training step come from this.
"""
import bisect
import collections
import re
import sys

LINE = re.compile(r"\s*(\S+)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+)\s*(.*)")
SPIN = ("spin", "sleep", "wait", "yield", "rust_begin_short_backtrace")


def idle(sym):
    return sym == "IDLE" or any(s in sym.lower() for s in SPIN)


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: serial_time.py PERF_SCRIPT.txt [SKIP_SECONDS]")
    skip = float(sys.argv[2]) if len(sys.argv) == 3 else 0.0
    rows = []
    with open(sys.argv[1]) as f:
        for line in f:
            m = LINE.match(line)
            if m:
                comm, _, cpu, t, ip, sym = m.groups()
                rows.append((float(t), int(cpu), "IDLE" if comm == "swapper" else sym.strip() or ip))
    if not rows:
        sys.exit("no samples: was it `perf script -F comm,tid,cpu,time,ip,sym`?")
    t0 = min(r[0] for r in rows)
    by_cpu = collections.defaultdict(list)
    for r in rows:
        if r[0] > t0 + skip:
            by_cpu[r[1]].append(r)
    if sorted(by_cpu) != [0, 1]:
        sys.exit(f"expected samples from CPUs 0 and 1, got {sorted(by_cpu)}")
    times = {c: [r[0] for r in by_cpu[c]] for c in by_cpu}
    serial, windows = collections.Counter(), 0
    for c in (0, 1):
        other = 1 - c
        for t, _, sym in by_cpu[c]:
            i = bisect.bisect_left(times[other], t)
            near = [j for j in (i - 1, i) if 0 <= j < len(times[other])]
            j = min(near, key=lambda j: abs(times[other][j] - t))
            if abs(times[other][j] - t) > 0.0004:
                continue
            windows += 1
            if idle(by_cpu[other][j][2]) and not idle(sym):
                serial[sym] += 1
    windows //= 2  # each moment was counted once from each core
    total = sum(serial.values())
    print(f"{total} of {windows} moments ({100 * total / max(windows, 1):.1f} %) had one core idle")
    try:
        for sym, n in serial.most_common(15):
            print(f"{100 * n / max(windows, 1):6.2f} %  {sym[:100]}")
    except BrokenPipeError:  # piped into `head`
        pass


if __name__ == "__main__":
    main()
