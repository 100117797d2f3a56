"""`/metrics` of the real binary (`--shards 2`) after pub/sub traffic, read
with the Prometheus client library's own text parser
(`prometheus_client.parser.text_string_to_metric_families`): it parses, every
ringfan family has a series per shard, the publish-to-send latency and queued
bytes histograms agree with the counters the broker and runtime keep, and the
process metrics and build info are there and plausible.
"""

from __future__ import annotations

import asyncio
import math
import time
import tomllib
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from wsclient import STEP, acked, bounded, connect, j, recv, run, send, uid

REPO = Path(__file__).resolve().parents[2]
SUBSCRIBERS, PUBLISHERS, TOPICS, PER_TOPIC = 8, 4, 5, 6


def scrape(server) -> tuple[dict, str]:
    """The families of one scrape, by name (counters without `_total`, as
    the parser names them), and the Content-Type."""
    status, headers, body = server.get("/metrics")
    assert status == 200, body
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    return families, headers.get("Content-Type", "")


def by_shard(family, sample_name: str, **labels) -> dict[str, float]:
    """`sample_name`'s value per shard label, among samples with `labels`."""
    out = {}
    for s in family.samples:
        if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items()):
            out[s.labels["shard"]] = s.value
    return out


def histogram(family) -> dict[str, dict]:
    """Per shard: buckets as [(le, cumulative count)], sum and count."""
    shards: dict[str, dict] = {}
    for s in family.samples:
        h = shards.setdefault(s.labels["shard"], {"buckets": [], "sum": None, "count": None})
        if s.name.endswith("_bucket"):
            h["buckets"].append((float(s.labels["le"]), s.value))
        elif s.name.endswith("_sum"):
            h["sum"] = s.value
        elif s.name.endswith("_count"):
            h["count"] = s.value
    return shards


def check_histogram(family) -> dict[str, dict]:
    """Per shard: ascending bounds ending in +Inf, counts that never go
    down, the +Inf bucket equal to the count."""
    assert family.type == "histogram", family
    shards = histogram(family)
    assert sorted(shards) == ["0", "1"], shards.keys()
    for shard, h in shards.items():
        bounds = [le for le, _ in h["buckets"]]
        counts = [c for _, c in h["buckets"]]
        assert bounds == sorted(bounds) and len(set(bounds)) == len(bounds), (shard, bounds)
        assert bounds[-1] == math.inf, (shard, bounds)
        assert all(a <= b for a, b in zip(counts, counts[1:])), (shard, counts)
        assert counts[-1] == h["count"], (shard, h)
        assert h["sum"] is not None and h["sum"] >= 0, (shard, h)
    return shards


def test_metrics_parse_and_histograms_agree_with_the_counters(start_server):
    s = start_server()
    base = uid()
    topics = [f"{base}.t{i}" for i in range(TOPICS)]

    async def traffic():
        subs = [await connect(s.url("/ws")) for _ in range(SUBSCRIBERS)]
        pubs = [await connect(s.url("/ws")) for _ in range(PUBLISHERS)]
        try:
            for i, sub in enumerate(subs):
                await acked(sub, op="sub", topic=f"{base}.>", id=i)
            for k in range(PER_TOPIC):
                for i, t in enumerate(topics):
                    await send(pubs[(k + i) % PUBLISHERS], j(op="pub", topic=t, data=k))
            want = PER_TOPIC * TOPICS
            for sub in subs:
                for _ in range(want):
                    await recv(sub)
        finally:
            await bounded(asyncio.gather(*(c.close() for c in subs + pubs),
                                         return_exceptions=True))

    run(traffic())
    deliveries = SUBSCRIBERS * PER_TOPIC * TOPICS
    # Every delivery was received, so every send carrying one was
    # submitted; the closes above settle within a few turns.
    deadline = time.monotonic() + STEP
    while True:
        families, content_type = scrape(s)
        latency = check_histogram(families["ringfan_publish_to_send_seconds"])
        queued = check_histogram(families["ringfan_connection_queued_bytes"])
        sends = by_shard(families["ringfan_sends"], "ringfan_sends_total")
        delivered = by_shard(families["ringfan_deliveries"], "ringfan_deliveries_total")
        settled = all(queued[sh]["count"] == sends[sh] for sh in sends) and all(
            latency[sh]["count"] == delivered[sh] for sh in delivered)
        if settled or time.monotonic() > deadline:
            break
        time.sleep(0.05)

    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert sum(delivered.values()) == deliveries, delivered
    # One observation per delivery, on the subscriber's shard, like the
    # counter: per shard, not only in total.
    for shard in ("0", "1"):
        assert latency[shard]["count"] == delivered[shard], (shard, latency, delivered)
        # One observation per send, on its shard.
        assert queued[shard]["count"] == sends[shard], (shard, queued, sends)
    assert sum(h["sum"] for h in latency.values()) > 0, latency
    # Nothing waited anywhere near 5 s, and the mean is a real latency.
    assert sum(h["buckets"][-2][1] for h in latency.values()) == deliveries, latency
    mean = sum(h["sum"] for h in latency.values()) / deliveries
    assert 0 < mean < 5, mean
    # Every send found something queued (at least a frame and its 64
    # bytes of overhead).
    for h in queued.values():
        assert h["sum"] >= 64 * h["count"] > 0, queued

    # Every ringfan family but the process-wide ones has a series per shard.
    shared = {"ringfan_build_info", "ringfan_peer_addresses_tracked"}
    for name, f in families.items():
        if name.startswith("ringfan_") and name not in shared:
            shard_values = {x.labels.get("shard") for x in f.samples}
            assert shard_values == {"0", "1"}, (name, shard_values)
    published = by_shard(families["ringfan_publishes"], "ringfan_publishes_total")
    assert sum(published.values()) == PER_TOPIC * TOPICS, published

    # Process metrics, read from /proc at the scrape.
    def one(name: str) -> float:
        samples = families[name].samples
        assert len(samples) == 1, samples
        return samples[0].value

    assert one("process_resident_memory_bytes") > 1 << 20
    assert one("process_virtual_memory_bytes") >= one("process_resident_memory_bytes")
    assert 0 < one("process_open_fds") <= one("process_max_fds")
    assert families["process_cpu_seconds"].type == "counter"
    assert one("process_cpu_seconds") >= 0
    assert time.time() - 600 < one("process_start_time_seconds") <= time.time() + 1
    # Connections sit in direct descriptors, not fds: the scrape's own at least.
    descriptors = by_shard(families["ringfan_direct_descriptors"], "ringfan_direct_descriptors")
    slots = by_shard(families["ringfan_direct_descriptor_slots"],
                     "ringfan_direct_descriptor_slots")
    assert sum(descriptors.values()) >= 1 and min(slots.values()) > 0, (descriptors, slots)

    version = tomllib.loads((REPO / "Cargo.toml").read_text())["package"]["version"]
    build = families["ringfan_build_info"].samples
    assert len(build) == 1 and build[0].value == 1, build
    assert build[0].labels["version"] == version, build
    assert build[0].labels["commit"], build
