"""Medians of the runs in this folder: python3 summarize.py"""
import json, glob, statistics as st
for mode in ["ws", "http1", "http100", "ws10", "http1t10", "http100t10"]:
    rs = [json.load(open(f)) for f in sorted(glob.glob(f"{mode}-[0-9].json"))]
    if not rs:
        continue
    def med(k):
        return st.median(r["extra"].get(k, float("nan")) for r in rs)
    loss = sum(r["counts"]["lost"] + r["counts"]["errors"] + r["counts"].get("not_published", 0) for r in rs)
    pubs = [r["extra"]["publishes_per_s"] for r in rs]
    print(f"{mode:11} pub/s med {med('publishes_per_s'):>10,.0f} (runs {', '.join(f'{p:,.0f}' for p in pubs)})"
          f" deliv/s {med('deliveries_per_s'):>10,.0f} srv_us/msg {med('server_cpu_us_per_delivery'):.3f}"
          f" srv_busy {med('server_cpu_share'):.2f} cli_busy {med('client_cpu_share'):.2f}"
          f" cli_us/msg {med('client_cpu_us_per_delivery'):.3f} p50 {st.median(r['latency']['p50_us'] for r in rs)/1e3:.1f}ms"
          f" lost+err+notpub {loss} problems {sum(len(r['problems']) for r in rs)}")
