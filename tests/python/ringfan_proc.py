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
from pathlib import Path

LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")


class RingfanProcess:
    """`BINARY --listen 127.0.0.1:0 --shards 2 --no-pin EXTRA...`.

    Its stderr and stdout both go to `log`. Its port is known once it has
    printed its "listening on" line (`wait_ready`).
    """

    def __init__(self, binary: Path, *extra: str, log: Path):
        self.args = [str(binary), "--listen", "127.0.0.1:0", "--shards", "2", "--no-pin", *extra]
        self.log_path = log
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(
            self.args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._log
        )
        self.port: int | None = None
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:  # keep draining so the pipe never fills
            self._log.write(raw)
            self._log.flush()
            m = LISTENING.search(raw.decode(errors="replace"))
            if m and self.port is None:
                self.port = int(m.group(1))
                self._ready.set()
        self._ready.set()  # EOF: the server died before (or after) listening

    def wait_ready(self, timeout: float) -> int | None:
        """The port, or None if the server did not print it within
        `timeout` seconds; it is stopped then."""
        self._ready.wait(timeout)
        if self.port is None:
            self.stop()
        return self.port

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
