#!/usr/bin/env python3
"""Median table of benches/uws/compare.sh's runs: per broker and offered
rate, deliveries/s, p50, p99, server CPU per delivery, and how many runs lost
messages (a broker past its cliff drops or stalls rather than slows)."""

import json
import os
import re
import statistics
import sys


def main():
    d = sys.argv[1]
    runs = {}
    for name in sorted(os.listdir(d)):
        m = re.fullmatch(r"(\w+)-(\d+)-(\d+)\.json", name)
        if not m:
            continue
        with open(os.path.join(d, name)) as f:
            r = json.load(f)
        runs.setdefault((int(m[2]), m[1]), []).append(r)
    print("| offered | broker | runs | delivered/s | p50 | p99 | server CPU/delivery | runs with loss |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for (rate, broker), rs in sorted(runs.items()):
        clean = [r for r in rs if not r["counts"].get("lost")]

        def med(f, fmt, pool=clean):
            vals = [f(r) for r in pool]
            return fmt(statistics.median(vals)) if vals else "-"

        print(
            f"| {rate * 1000 / 1e6:.0f} M/s | {broker} | {len(rs)} | "
            + med(lambda r: r["extra"]["deliveries_per_s"] / 1e6, "{:.2f}M".format, rs)
            + " | "
            + med(lambda r: r["latency"]["p50_us"] / 1e3, "{:.1f} ms".format)
            + " | "
            + med(lambda r: r["latency"]["p99_us"] / 1e3, "{:.1f} ms".format)
            + " | "
            + med(lambda r: r["extra"]["server_cpu_us_per_delivery"], "{:.3f} µs".format)
            + f" | {len(rs) - len(clean)} |"
        )
    print()
    print("Latency and CPU medians are over the runs without loss.")


if __name__ == "__main__":
    main()
