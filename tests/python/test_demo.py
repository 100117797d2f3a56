"""The live market board (demo/) end to end, in Debian's headless Chromium.

ringfan serves demo/ itself (`--static demo`); the real load generator's
`feed` publishes market data to it ($RINGFAN_LOADGEN, default
target/release/ringfan-loadgen: tests/run.sh builds it); Chromium loads
the page from the broker, which connects through ringfan.js. The test
drives the browser over the DevTools protocol (the `websockets` client,
as test_chromium.py does; no puppeteer) and checks what a user sees: rows
appear and update, the message counter grows, the filter box resubscribes,
and when the broker is restarted on the same port the page reconnects (its
reconnect counter goes up) and updates resume. Console errors and uncaught
exceptions fail it. A screenshot is written to reports/demo/board.png.

Skipped when `chromium` is not installed (tests/run.sh installs it).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from conftest import REPO
from test_chromium import CHROMIUM, Chromium

DEMO = REPO / "demo"
SCREENSHOT = REPO / "reports" / "demo" / "board.png"


def loadgen_bin() -> Path:
    path = Path(os.environ.get("RINGFAN_LOADGEN", "target/release/ringfan-loadgen"))
    return path if path.is_absolute() else REPO / path


def test_demo_copy_of_the_client_is_current():
    """demo/ringfan.js is a copy of clients/js/ringfan.js (a static root
    cannot reach ../clients): stale, it fails here; `bash demo/sync.sh`."""
    client = REPO / "clients" / "js" / "ringfan.js"
    if not client.exists():
        pytest.skip("clients/js/ringfan.js is not in this tree")
    assert (DEMO / "ringfan.js").read_bytes() == client.read_bytes(), \
        "demo/ringfan.js differs from clients/js/ringfan.js: run bash demo/sync.sh"


class Feed:
    """`ringfan-loadgen feed` against a port, for as long as the test needs
    it; `stop()` kills it (its own PID only)."""

    def __init__(self, port: int, log: Path):
        binary = loadgen_bin()
        if not binary.exists():
            pytest.fail(f"no load generator at {binary} (cargo build --release -p "
                        f"ringfan-loadgen, or set RINGFAN_LOADGEN)")
        self.log = open(log, "ab")
        # Two venues, so the filter has something to tell apart; no
        # subscribers of its own (the page is the subscriber); no burst; long
        # enough to outlive any test (it is killed after).
        self.proc = subprocess.Popen(
            [str(binary), "feed", "--url", f"ws://127.0.0.1:{port}/ws", "--symbols", "30",
             "--venues", "2", "--rate", "300", "--publishers", "1", "--subscribers", "0",
             "--burst", "1", "--warmup", "0s", "--duration", "600s", "--quiet",
             "--report-only"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()


class Session:
    """A DevTools session on one page that keeps the events it is sent
    (console calls, exceptions) while calls wait for their replies."""

    def __init__(self, ws):
        self.ws = ws
        self.ids = itertools.count(1)
        self.waiting: dict[int, asyncio.Future] = {}
        self.events: list[dict] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self._take(json.loads(raw))
        except ConnectionClosed:
            pass  # the test is over (or failing, and says why itself)

    def _take(self, m: dict) -> None:
        if "id" in m:
            fut = self.waiting.pop(m["id"], None)
            if fut and not fut.done():
                fut.set_result(m)
        else:
            self.events.append(m)

    async def call(self, method: str, timeout: float = 15, **params):
        my_id = next(self.ids)
        fut = asyncio.get_running_loop().create_future()
        self.waiting[my_id] = fut
        await self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        reply = await asyncio.wait_for(fut, timeout)
        if "error" in reply:
            raise AssertionError(f"{method}: {reply['error']}")
        return reply["result"]

    async def js(self, expression: str, timeout: float = 15):
        res = await self.call("Runtime.evaluate", timeout=timeout, expression=expression,
                              awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in res:
            d = res["exceptionDetails"]
            raise AssertionError(f"page threw: {d.get('exception', {}).get('description') or d}")
        return res["result"].get("value")

    def errors(self) -> list[str]:
        """console.error/assert calls and uncaught exceptions so far."""
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error",
                                                                                   "assert"):
                out.append("console." + p["type"] + ": " + " ".join(
                    str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif e.get("method") == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append("exception: " + (d.get("exception", {}).get("description")
                                            or d.get("text", "")))
        return out


# What the page shows, read from its DOM (what a user sees).
VIEW = """(() => {
  if (!document.getElementById('messages')) return null;  // not loaded yet
  const rows = [...document.querySelectorAll('#rows tr')].map(tr => ({
    topic: tr.dataset.topic,
    bid: tr.querySelector('td.bid').textContent,
    ask: tr.querySelector('td.ask').textContent,
    updates: +tr.querySelector('td.updates').textContent,
  }));
  const num = (id) => +document.getElementById(id).textContent.replace(/[^0-9]/g, '');
  return {rows, messages: num('messages'), reconnects: num('reconnects'), gaps: num('gaps'),
          state: document.getElementById('state').dataset.state,
          latency: document.getElementById('latency').textContent,
          error: document.getElementById('filter-error').textContent};
})()"""


async def wait_view(s: Session, ok, what: str, timeout: float = 20) -> dict:
    """Poll the view until `ok(view)`; fail naming `what` and the last view."""
    deadline = time.monotonic() + timeout
    view = None
    while True:
        try:
            view = await s.js(VIEW)
        except AssertionError as e:
            # The page navigating under the evaluation (its first load).
            if "context" not in str(e).lower():
                raise
        if view is not None and ok(view):
            return view
        if time.monotonic() > deadline:
            brief = view and {**view, "rows": view["rows"][:3], "row_count": len(view["rows"])}
            raise AssertionError(f"{what} within {timeout}s; the page shows {brief}; "
                                 f"console: {s.errors()}")
        await asyncio.sleep(0.2)


async def drive(browser: Chromium, start_broker, port: int, tmp_path: Path, feeds: list):
    dt_port = await asyncio.to_thread(browser.devtools_port)
    target = await asyncio.to_thread(browser.page_ws_url, dt_port, "about:blank")
    async with ws_connect(target, proxy=None, max_size=None, ping_interval=None,
                          open_timeout=10) as ws:
        s = Session(ws)
        # Listening before the page loads: no console line is missed.
        await s.call("Runtime.enable")
        await s.call("Page.enable")
        await s.call("Page.navigate", url=f"http://127.0.0.1:{port}/")

        # Rows appear (the default filter md.NASDAQ.*), with prices.
        v = await wait_view(s, lambda v: v["state"] == "open" and len(v["rows"]) >= 10,
                            "ten rows and an open connection")
        assert all(r["topic"].startswith("md.NASDAQ.") for r in v["rows"]), v["rows"][:5]
        # Rows update and the counter grows.
        before = {r["topic"]: r["updates"] for r in v["rows"]}
        v2 = await wait_view(
            s, lambda x: x["messages"] >= v["messages"] + 100
            and sum(r["updates"] > before.get(r["topic"], 0) for r in x["rows"]) >= 5,
            "100 more messages and five rows updated")
        assert any(r["bid"] not in ("", "–") for r in v2["rows"]), v2["rows"][:3]
        await wait_view(s, lambda x: x["latency"].endswith("ms"), "a latency readout")

        # The filter box resubscribes: only NYSE rows from now on.
        await s.js("document.getElementById('filter').value = 'md.NYSE.*';"
                   "document.getElementById('filter-form').requestSubmit(); true")
        await wait_view(s, lambda x: len(x["rows"]) >= 10
                        and all(r["topic"].startswith("md.NYSE.") for r in x["rows"]),
                        "only md.NYSE.* rows after the filter changed")
        # A pattern the broker refuses is shown, not thrown.
        await s.js("document.getElementById('filter').value = 'md..x';"
                   "document.getElementById('filter-form').requestSubmit(); true")
        await wait_view(s, lambda x: x["error"] != "", "the refusal of a bad pattern")
        await s.js("document.getElementById('filter').value = 'md.NYSE.*';"
                   "document.getElementById('filter-form').requestSubmit(); true")
        v = await wait_view(s, lambda x: len(x["rows"]) >= 10 and x["error"] == "",
                            "NYSE rows again")
        assert v["reconnects"] == 0, v

        # Restart the broker on the same port, and the feed with it.
        feeds[-1].stop()
        broker = start_broker.current
        broker.terminate()
        await asyncio.to_thread(broker.stop)
        await wait_view(s, lambda x: x["state"] != "open", "the page seeing the broker go")
        at_restart = (await s.js(VIEW))["messages"]
        start_broker.restart()
        feeds.append(Feed(port, tmp_path / "feed2.log"))
        v = await wait_view(s, lambda x: x["state"] == "open" and x["reconnects"] >= 1,
                            "a reconnect", timeout=30)
        counts = {r["topic"]: r["updates"] for r in v["rows"]}
        v = await wait_view(
            s, lambda x: x["messages"] >= at_restart + 100
            and sum(r["updates"] > counts.get(r["topic"], 0) for r in x["rows"]) >= 5,
            "updates after the restart")
        assert v["reconnects"] == 1, v
        # Loopback, 300 updates/s: nothing is lost (a restart is a reset,
        # seq 1 again, not a gap).
        assert v["gaps"] == 0, v
        assert all(r["topic"].startswith("md.NYSE.") for r in v["rows"]), v["rows"][:5]

        shot = await s.call("Page.captureScreenshot", format="png")
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        SCREENSHOT.write_bytes(base64.b64decode(shot["data"]))

        await asyncio.sleep(0.5)  # late console lines
        assert s.errors() == [], s.errors()
        s.reader.cancel()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                    "(tests/run.sh installs it: apt-get install -y chromium)")
def test_demo_board_in_chromium(start_server, tmp_path):
    if not (DEMO / "ringfan.js").exists():
        pytest.fail("demo/ringfan.js is missing: bash demo/sync.sh")
    flags = ["--static", str(DEMO), "--drain-timeout", "1"]
    first = start_server(*flags)
    port = first.port

    class Brokers:
        """The broker now serving `port` (the test restarts it)."""
        current = first

        @classmethod
        def restart(cls):
            cls.current = start_server(*flags, listen=f"127.0.0.1:{port}")

    feeds = [Feed(port, tmp_path / "feed1.log")]
    browser = Chromium("about:blank", tmp_path / "profile",
                       ["--window-size=1280,900", "--hide-scrollbars"])
    try:
        from wsclient import run
        run(drive(browser, Brokers, port, tmp_path, feeds), timeout=150)
    finally:
        browser.close()
        for f in feeds:
            f.stop()
