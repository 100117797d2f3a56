#!/usr/bin/env python3
"""Turn the load generator's JSON reports from benches/run.sh into the
matrix table in docs/benchmarks.md (between the bench-matrix markers):
ringfan beside the baseline, as ratios from the same run."""

import json
import os
import sys

SCENARIOS = [
    ("fanout-1x1000", "fanout 1 topic x 1,000 subs, saturation (closed loop)"),
    ("fanout-1x1000-half", "fanout 1 x 1,000 at 50 % of that broker's saturation"),
    ("fanout-1000x10000", "fanout 1,000 topics x 10,000 subs, 10 pubs, 100k pub/s offered"),
    ("feed", "feed 1,000 symbols, 2k updates/s (5x burst for 2 s), 1,000 subs"),
    ("echo", "echo 100 conns x 100 B, 1 in flight each"),
    ("conns", "conns 10,000 held + 1 broadcast"),
]

BEGIN = "<!-- bench-matrix:begin -->"
END = "<!-- bench-matrix:end -->"


def load(d, broker, name):
    p = os.path.join(d, f"{broker}-{name}.json")
    if not os.path.exists(p):
        return None
    with open(p) as f:
        return json.load(f)


def fmt_rate(v):
    if v is None:
        return "-"
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e3:
        return f"{v / 1e3:.1f}k"
    return f"{v:.0f}"


def fmt_us(v):
    if v is None:
        return "-"
    if v >= 1e6:
        return f"{v / 1e6:.2f} s"
    if v >= 1e3:
        return f"{v / 1e3:.2f} ms"
    return f"{v:.0f} µs"


def ratio(a, b, higher_better=True):
    if a is None or b is None or a == 0 or b == 0:
        return "-"
    r = a / b if higher_better else b / a
    return f"{r:.2f}x"


def figures(r):
    if r is None:
        return {}
    e = r.get("extra", {})
    c = r.get("counts", {})
    lat = r.get("latency", {})
    return {
        "rate": e.get("deliveries_per_s") if r["scenario"] != "conns" else None,
        "p50": lat.get("p50_us") if lat.get("count") else None,
        "p99": lat.get("p99_us") if lat.get("count") else None,
        "cpu": e.get("server_cpu_us_per_delivery"),
        "rss": e.get("server_rss_per_conn_bytes"),
        "connect": e.get("connect_rate_per_s"),
        "ok": ("yes" if not r.get("problems") else "; ".join(r["problems"])[:80])
        + (" (generator core >= 85 % busy)" if r.get("notes") else ""),
        "delivered": c.get("delivered"),
    }


def main():
    d, doc = sys.argv[1], sys.argv[2]
    lines = [
        BEGIN,
        "",
        "| scenario | broker | deliveries/s | p50 | p99 | server CPU/delivery | RSS/conn | clean |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, title in SCENARIOS:
        rf = figures(load(d, "ringfan", name))
        bl = figures(load(d, "baseline", name))
        if not rf and not bl:
            continue
        for broker, f in (("ringfan", rf), ("baseline", bl)):
            if not f:
                continue
            rss = f"{f['rss']:.0f} B" if f.get("rss") is not None and name == "conns" else "-"
            cpu = f"{f['cpu']:.2f} µs" if f.get("cpu") is not None else "-"
            lines.append(
                f"| {title if broker == 'ringfan' else ''} | {broker} | {fmt_rate(f['rate'])} | "
                f"{fmt_us(f['p50'])} | {fmt_us(f['p99'])} | {cpu} | {rss} | {f['ok']} |"
            )
        if rf and bl:
            rss_ratio = ratio(rf.get("rss"), bl.get("rss"), False) if name == "conns" else "-"
            lines.append(
                f"| | **ringfan / baseline** | **{ratio(rf['rate'], bl['rate'])}** | "
                f"{ratio(rf['p50'], bl['p50'], False)} | {ratio(rf['p99'], bl['p99'], False)} | "
                f"{ratio(rf['cpu'], bl['cpu'], False)} | {rss_ratio} | |"
            )
    lines += [
        "",
        "Ratios read \"how many times better ringfan is\" (higher is better for",
        "both throughput and latency columns). Plots: `docs/bench/<broker>-<scenario>.svg`;",
        "every figure: the matching `.json`.",
        "",
        END,
    ]
    table = "\n".join(lines)
    with open(doc) as f:
        text = f.read()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + table + tail
    else:
        text = text.rstrip("\n") + "\n\n" + table + "\n"
    with open(doc, "w") as f:
        f.write(text)
    print(table)


if __name__ == "__main__":
    main()
