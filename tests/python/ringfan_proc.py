"""One ringfan process on an ephemeral port: started, found, stopped.

Shared by the pytest fixtures (conftest.py) and the Autobahn runner
(tests/autobahn/run.py, which imports it from this directory). Standard
library only, so that run.py needs nothing but the venv's kosoku.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from pathlib import Path

LISTENING = re.compile(r"^ringfan: listening on 127\.0\.0\.1:(\d+)")
TLS_LISTENING = re.compile(r"^ringfan: tls listening on 127\.0\.0\.1:(\d+)")


SERIES = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metric_sum(text: str, query: str) -> int | None:
    """The sum of the /metrics series that `query` selects: `name` selects
    every series of that name (one per shard), `name{k="v"}` those that also
    carry each given label; None if none does. A total over shards."""
    m = SERIES.match(query + " 0")
    assert m, f"bad metric query {query!r}"
    want_name, want = m.group(1), set(LABEL.findall(m.group(2) or ""))
    total = None
    for line in text.splitlines():
        m = SERIES.match(line)
        if not m or m.group(1) != want_name:
            continue
        if want <= set(LABEL.findall(m.group(2) or "")):
            total = (total or 0) + int(m.group(3))
    return total


class RingfanProcess:
    """`BINARY --listen LISTEN --shards 2 --no-pin EXTRA...` (`LISTEN`
    defaults to `127.0.0.1:0`; `off` for no plain listener).

    Its stderr and stdout both go to `log`. Its port is known once it has
    printed its "listening on" line (`wait_ready`); with `--listen-tls` among
    the flags, its TLS port (`tls_port`) once it has printed its "tls
    listening on" line too. Every stdout line is kept (`lines`,
    `wait_line`).
    """

    def __init__(self, binary: Path, *extra: str, log: Path, listen: str = "127.0.0.1:0"):
        self.args = [str(binary), "--listen", listen, "--shards", "2", "--no-pin", *extra]
        self.log_path = log
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(
            self.args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._log
        )
        self.port: int | None = None
        self.tls_port: int | None = None
        self._want_plain = listen != "off"
        self._want_tls = "--listen-tls" in extra
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._eof = False
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:  # keep draining so the pipe never fills
            self._log.write(raw)
            self._log.flush()
            line = raw.decode(errors="replace").rstrip("\n")
            m = LISTENING.search(line)
            if m and self.port is None:
                self.port = int(m.group(1))
            m = TLS_LISTENING.search(line)
            if m and self.tls_port is None:
                self.tls_port = int(m.group(1))
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
            if ((self.port is not None or not self._want_plain)
                    and (self.tls_port is not None or not self._want_tls)):
                self._ready.set()
        with self._cond:
            self._eof = True
            self._cond.notify_all()
        self._ready.set()  # EOF: the server died before (or after) listening

    def wait_ready(self, timeout: float) -> int | None:
        """The port (the TLS port when there is no plain listener), or None
        if the server did not print every port it was asked for within
        `timeout` seconds; it is stopped then."""
        self._ready.wait(timeout)
        missing = ((self._want_plain and self.port is None)
                   or (self._want_tls and self.tls_port is None))
        if missing:
            self.stop()
            return None
        return self.port if self._want_plain else self.tls_port

    def wait_line(self, pattern: str, after: int = 0, timeout: float = 5.0) -> str | None:
        """The first stdout line from index `after` on that contains
        `pattern`, waiting up to `timeout` seconds; None if none came (or
        the server exited). `len(self.lines)` before an action is the
        `after` that ignores what was printed before it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[after:]:
                    if pattern in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    return None
                self._cond.wait(left)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 10.0) -> tuple[int | None, bool]:
        """SIGTERM, then SIGKILL after `grace` seconds. Returns (exit status,
        whether it had to be killed). Stopping twice is harmless."""
        killed = False
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                killed = True
        self._reader.join(2)
        self._log.close()
        return self.proc.returncode, killed
