"""A real browser over wss://: headless Chromium subscribes through
ringfan's TLS listener and receives what Python publishes (and the other
way round).

Chromium loads a local page whose script opens `wss://HOST:PORT/ws`,
subscribes and keeps what arrives; the test drives it through the DevTools
protocol (`--remote-debugging-port`, spoken with the `websockets` client),
evaluating promises with `awaitPromise` and bounded waits. Chromium trusts
the server by key pin (`--ignore-certificate-errors-spki-list`, which it
honours only with `--user-data-dir`), not by the CA: nothing is installed in
a certificate store. It is started in its own process group and killed, the
whole group, on every way out of a test.

Skipped when `chromium` is not installed; tests/run.sh installs it
(`apt-get install chromium`).
"""

from __future__ import annotations

import asyncio
import http.client
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect as ws_connect

from conftest import tls_flags
from wsclient import acked, bounded, connect, msg, recv, run, uid

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (tests/run.sh installs it: apt-get install -y chromium)")

START = 30  # seconds for Chromium to start and show its DevTools port

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>ringfan over wss</title>
<script>
// #url=wss://...&topic=T: subscribe to T, keep every msg in `got`.
const q = new URLSearchParams(location.hash.slice(1));
window.got = [];
window.other = [];
window.ready = new Promise((resolve, reject) => {
  const ws = new WebSocket(q.get("url"), "ringfan.v1");
  window.ws = ws;
  ws.onopen = () => ws.send(JSON.stringify({op: "sub", topic: q.get("topic"), id: 1}));
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.op === "ack" && m.id === 1) resolve(ws.protocol);
    else if (m.op === "msg") window.got.push(e.data);
    else window.other.push(e.data);
  };
  ws.onerror = () => reject(new Error("websocket error"));
  ws.onclose = (e) => { window.closed = e.code; reject(new Error("closed " + e.code)); };
});
// Resolves with the messages once there are n of them, or after ms.
window.waitFor = (n, ms) => new Promise((resolve) => {
  const t0 = Date.now();
  (function poll() {
    if (window.got.length >= n || Date.now() - t0 > ms) resolve(JSON.stringify(window.got));
    else setTimeout(poll, 20);
  })();
});
</script>
<p>ringfan wss test page</p>
"""


class Chromium:
    """Headless Chromium on `url`, with a DevTools port; `close()` kills
    its whole process group."""

    def __init__(self, url: str, profile: Path, extra: list[str]):
        profile.mkdir(parents=True, exist_ok=True)
        self.profile = profile
        self.log_path = profile.parent / "chromium.log"
        self._log = open(self.log_path, "wb")
        args = [
            CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
            "--disable-extensions", "--disable-background-networking", "--disable-sync",
            "--disable-component-update", "--password-store=basic", "--use-mock-keychain",
            f"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0", *extra, url,
        ]
        self.args = args
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def devtools_port(self, timeout: float = START) -> int:
        """The port Chromium wrote to DevToolsActivePort."""
        path = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"chromium exited ({self.proc.returncode}): "
                                     f"{self.log_tail()}")
            try:
                first = path.read_text().split("\n")[0].strip()
                if first.isdigit():
                    return int(first)
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"chromium showed no DevTools port within {timeout}s: "
                             f"{self.log_tail()}")

    def page_ws_url(self, port: int, url_prefix: str, timeout: float = START) -> str:
        """The DevTools WebSocket URL of the page whose URL starts with
        `url_prefix`."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                conn.request("GET", "/json/list")
                targets = json.loads(conn.getresponse().read())
            except (OSError, ValueError) as e:
                last = e
                targets = []
            finally:
                conn.close()
            for t in targets:
                if t.get("type") == "page" and t.get("url", "").startswith(url_prefix):
                    return t["webSocketDebuggerUrl"]
            last = targets or last
            time.sleep(0.05)
        raise AssertionError(f"no page {url_prefix} in DevTools within {timeout}s: {last}")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        # The group may outlive its leader (renderer, zygote, crashpad).
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._log.close()


class ContextGone(AssertionError):
    """The page's JavaScript context went away (a navigation) mid-call."""


class DevTools:
    """A DevTools protocol session on one page."""

    def __init__(self, ws):
        self.ws = ws
        self.ids = itertools.count(1)

    async def call(self, method: str, timeout: float = 15, **params):
        my_id = next(self.ids)
        await bounded(self.ws.send(json.dumps({"id": my_id, "method": method,
                                               "params": params})))
        while True:
            reply = json.loads(await bounded(self.ws.recv(), timeout))
            if reply.get("id") == my_id:
                if "error" in reply:
                    if "context" in reply["error"].get("message", "").lower():
                        raise ContextGone(f"{method}: {reply['error']}")
                    raise AssertionError(f"{method}: {reply['error']}")
                return reply["result"]

    async def evaluate(self, expression: str, timeout: float = 15):
        """The value of `expression` (awaited if a promise); fails with the
        page's exception if it throws or rejects."""
        res = await self.call("Runtime.evaluate", timeout=timeout, expression=expression,
                              awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in res:
            detail = res["exceptionDetails"]
            text = detail.get("exception", {}).get("description") or detail.get("text")
            raise AssertionError(f"page threw: {text}")
        return res["result"].get("value")


@pytest.fixture
def chromium(tmp_path):
    """Factory: start Chromium on a URL; every one started is killed after
    the test, whatever happened."""
    started: list[Chromium] = []

    def start(url: str, extra: list[str]) -> Chromium:
        c = Chromium(url, tmp_path / f"profile{len(started)}", extra)
        started.append(c)
        return c

    yield start
    for c in started:
        c.close()


def page_url(tmp_path: Path, wss_url: str, topic: str) -> str:
    page = tmp_path / "page.html"
    page.write_text(PAGE)
    return f"{page.as_uri()}#url={wss_url}&topic={topic}"


DEFLATE_ANSWER = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"


async def drive(browser: Chromium, url_prefix: str, server, topic: str, host: str,
                extensions: str = DEFLATE_ANSWER) -> None:
    port = await asyncio.to_thread(browser.devtools_port)
    target = await asyncio.to_thread(browser.page_ws_url, port, url_prefix)
    async with ws_connect(target, proxy=None, max_size=None, ping_interval=None,
                          open_timeout=10) as dt_ws:
        dt = DevTools(dt_ws)
        # The page may still be loading (its first document replaced, which
        # destroys the context an evaluation ran in): wait for its promise.
        deadline = time.monotonic() + 20
        while True:
            try:
                protocol = await dt.evaluate(
                    "(async () => { const t0 = Date.now();"
                    " while (!window.ready && Date.now() - t0 < 10000)"
                    "   await new Promise(r => setTimeout(r, 20));"
                    " return await window.ready; })()", timeout=20)
                break
            except ContextGone:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
        assert protocol == "ringfan.v1"
        # What the browser agreed to (permessage-deflate unless --deflate off).
        assert await dt.evaluate("window.ws.extensions") == extensions
        # Python publishes on the plain listener and over TLS.
        async with connect(server.url("/ws")) as plain, \
                connect(server.wss_url("/ws", host="127.0.0.1"),
                        ssl=server.tls_context) as tls:
            await acked(plain, op="pub", topic=topic, data={"from": "plain"}, id=1)
            await acked(tls, op="pub", topic=topic, data="from tls " + "x" * 100_000, id=2)
            got = json.loads(await dt.evaluate("window.waitFor(2, 10000)", timeout=15))
            # Two publishers on two connections: seq 1 and 2 in the order
            # the topic's owner took them.
            want = [('{"from":"plain"}'), ('"from tls ' + "x" * 100_000 + '"')]
            assert got in ([msg(topic, 1, want[0]), msg(topic, 2, want[1])],
                           [msg(topic, 1, want[1]), msg(topic, 2, want[0])]), \
                f"chromium got {str(got)[:300]}; see {browser.log_path}"
            # And the browser publishes to a Python subscriber.
            back = f"{topic}.back"
            await acked(plain, op="sub", topic=back, id=3)
            await dt.evaluate(
                f"window.ws.send(JSON.stringify({{op: 'pub', topic: '{back}',"
                f" data: {{browser: navigator.userAgent.includes('Chrome')}}, id: 9}}))")
            assert await recv(plain) == msg(back, 1, '{"browser":true}')
        # Its ack may come after the Python subscriber got the message.
        other = await dt.evaluate(
            "(async () => { const t0 = Date.now();"
            " while (window.other.length < 1 && Date.now() - t0 < 5000)"
            "   await new Promise(r => setTimeout(r, 20));"
            " return window.other; })()")
        assert other == ['{"op":"ack","id":9}'], other
        tls_info = await dt.evaluate("window.ws.readyState")
        assert tls_info == 1  # still open


@pytest.fixture
def wss_server(start_server, tls_certs):
    s = start_server(*tls_flags(tls_certs))
    s.tls_context = tls_certs.context()
    return s


def test_chromium_receives_over_wss_by_ip(wss_server, tls_certs, chromium, tmp_path):
    """wss://127.0.0.1:PORT (no SNI: the default certificate)."""
    topic = f"{uid()}.browser"
    url = page_url(tmp_path, wss_server.wss_url("/ws"), topic)
    browser = chromium(url, [
        f"--ignore-certificate-errors-spki-list={tls_certs.default.spki_sha256_b64}"])
    run(drive(browser, "file://", wss_server, topic, "127.0.0.1"), timeout=60)


def test_chromium_receives_over_wss_by_sni_name(start_server, tls_certs, chromium, tmp_path):
    """wss://a.test:PORT, a.test mapped to 127.0.0.1: Chromium sends SNI
    a.test and, pinning only a.test's key, accepts nothing but that
    certificate. With --deflate off: the browser's offer is declined and
    everything goes plain."""
    s = start_server("--deflate", "off", *tls_flags(tls_certs))
    s.tls_context = tls_certs.context()
    topic = f"{uid()}.browser"
    url = page_url(tmp_path, s.wss_url("/ws", host="a.test"), topic)
    browser = chromium(url, [
        "--host-resolver-rules=MAP a.test 127.0.0.1",
        f"--ignore-certificate-errors-spki-list={tls_certs.a.spki_sha256_b64}"])
    run(drive(browser, "file://", s, topic, "a.test", extensions=""), timeout=60)
    assert s.metric("ringfan_deflate_frames_total") == 0


def test_chromium_negotiates_deflate_and_reads_compressed_messages(
        start_server, tls_certs, chromium, tmp_path):
    """--deflate on (the default, said explicitly): Chromium offers permessage-deflate, agrees to our
    answer, inflates the compressed 100 KB message (the short one comes
    plain: both kinds on one connection) and compresses what it publishes,
    which ringfan inflates."""
    s = start_server("--deflate", "on", *tls_flags(tls_certs))
    s.tls_context = tls_certs.context()
    topic = f"{uid()}.deflate"
    url = page_url(tmp_path, s.wss_url("/ws"), topic)
    browser = chromium(url, [
        f"--ignore-certificate-errors-spki-list={tls_certs.default.spki_sha256_b64}"])
    run(drive(browser, "file://", s, topic, "127.0.0.1"), timeout=60)
    # The 100 KB message went to the browser compressed, once.
    assert s.metric("ringfan_deflate_frames_total") >= 1
    assert s.metric("ringfan_deflate_compressions_total") >= 1
