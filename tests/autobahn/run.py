#!/usr/bin/env python3
"""Run the Autobahn TestSuite (sections 1-10) against ringfan's /echo.

Uses kosoku (a native runner of the Autobahn case files, pinned in
tests/requirements.txt). Run it with the virtualenv's python so that the
`kosoku` console script is found at `sys.prefix/bin/kosoku`:

    cargo build --release
    .venv/bin/python tests/autobahn/run.py
    .venv/bin/python tests/autobahn/run.py --update-baseline   # after an improvement
    .venv/bin/python tests/autobahn/run.py --tls --out reports/autobahn-tls

It starts `ringfan --listen 127.0.0.1:0 --shards 2 --no-pin --echo --deflate on`,
drives ws://127.0.0.1:PORT/echo with every case, 12.* and 13.* (permessage-
deflate) included, stops the server, and checks:

* the number of cases run equals the baseline's count (kosoku exits 0 even
  when the selection is empty, so we count ourselves);
* every case passes: `behavior` and `behaviorClose` are both one of OK,
  NON-STRICT, INFORMATIONAL (no FAILED, UNIMPLEMENTED, ERROR, UNCLEAN, ...);
* no case is worse than in the baseline (OK > NON-STRICT > INFORMATIONAL);
  a better one is noted, with a hint to run --update-baseline.

With `--tls` the same cases go over TLS: ringfan also gets `--listen-tls`
and a test certificate (tests/python/tlscerts.py, which needs the venv's
`cryptography`), and kosoku, which speaks only ws:// (kosoku 0.1.0 refuses a
wss:// URL: "invalid url scheme", its tungstenite is built without TLS),
drives ws://127.0.0.1:FWD/echo on a forwarder in this process that relays
every byte, as it comes, over a TLS connection to ringfan's TLS port (one
TLS connection per kosoku connection; an end on either side closes both).
The verdicts are checked against the same baseline, less sections 12 and
13 (compression sits above TLS; the plain run covers it).

Standard library only (its server helper, tests/python/ringfan_proc.py, too),
but for `--tls`.
Exit status 0 when all checks pass, 1 otherwise
(2 for usage errors).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The server process helper is shared with the pytest fixtures.
sys.path.insert(0, str(REPO / "tests" / "python"))
from ringfan_proc import RingfanProcess, metric_sum  # noqa: E402

PASS = ("OK", "NON-STRICT", "INFORMATIONAL")
RANK = {"OK": 3, "NON-STRICT": 2, "INFORMATIONAL": 1}  # anything else: 0
# Over TLS the compression sections are left out: permessage-deflate sits
# above TLS (the plain run covers it) and they add ~3 minutes.
TLS_EXCLUDE = ("12.*", "13.*")
KOSOKU_FILES = re.compile(r"^(index\.(json|html)|.*_case_[0-9_]+\.(json|html))$")


def case_key(case_id: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in case_id.split("."))


def verdict(entry: dict) -> str:
    """The worse of a case's two verdicts (what the summary counts it as)."""
    b, c = entry.get("behavior", "?"), entry.get("behaviorClose", "?")
    if b not in PASS:
        return b
    if c not in PASS:
        return c
    return b if RANK[b] <= RANK[c] else c


def passed(entry: dict) -> bool:
    return entry.get("behavior") in PASS and entry.get("behaviorClose") in PASS


def find_kosoku() -> str:
    for cand in (
        Path(sys.prefix) / "bin" / "kosoku",
        Path(sys.prefix) / "Scripts" / "kosoku.exe",
    ):
        if cand.exists():
            return str(cand)
    found = shutil.which("kosoku")
    if found:
        return found
    sys.exit(
        "autobahn: kosoku not found; run with the venv's python "
        "(python3 -m venv .venv && .venv/bin/pip install -r tests/requirements.txt)"
    )


def clean_outdir(outdir: Path) -> None:
    """Remove a previous run's kosoku reports so they cannot be counted."""
    outdir.mkdir(parents=True, exist_ok=True)
    for p in outdir.iterdir():
        if p.is_file() and KOSOKU_FILES.match(p.name):
            p.unlink()


def load_results(outdir: Path) -> dict[str, dict]:
    index = outdir / "index.json"
    if not index.exists():
        return {}
    data = json.loads(index.read_text())
    cases: dict[str, dict] = {}
    for agent_cases in data.values():  # one agent (the server's name) expected
        cases.update(agent_cases)
    return cases


def make_baseline(results: dict[str, dict], old: dict | None) -> dict:
    """The baseline for `results`, keeping notes from the old baseline.

    A case with a `note` in the old baseline (a known timing flip) keeps
    the worse of its old and new verdicts, so the flip cannot fail a run.
    """
    old_cases = (old or {}).get("cases", {})
    cases = {}
    for cid in sorted(results, key=case_key):
        r = results[cid]
        entry = {"behavior": r["behavior"], "behaviorClose": r["behaviorClose"]}
        prev = old_cases.get(cid)
        if prev and prev.get("note"):
            for k in ("behavior", "behaviorClose"):
                if RANK.get(prev.get(k), 0) < RANK.get(entry[k], 0):
                    entry[k] = prev[k]
            entry["note"] = prev["note"]
        cases[cid] = entry
    base = {
        "comment": (old or {}).get(
            "comment",
            "Autobahn verdicts of ringfan /echo (kosoku, sections 1-10). "
            "Written by tests/autobahn/run.py --update-baseline.",
        ),
        "kosoku_args": kosoku_args(),
        "count": len(cases),
        "summary": summarise(cases),
        "cases": cases,
    }
    for k, v in (old or {}).items():  # keep any other hand-written fields
        if k not in base:
            base[k] = v
    return base


def dump_baseline(base: dict) -> str:
    """JSON with one line per case, so that diffs of the baseline read well."""
    top = {k: v for k, v in base.items() if k != "cases"}
    text = json.dumps(top, indent=1)[:-2]  # drop the closing "\n}"
    rows = [f"  {json.dumps(cid)}: {json.dumps(entry)}" for cid, entry in base["cases"].items()]
    return text + ',\n "cases": {\n' + ",\n".join(rows) + "\n }\n}\n"


def kosoku_args(tls: bool = False) -> list[str]:
    args = ["-p", "1"]
    for x in TLS_EXCLUDE if tls else ():
        args += ["-x", x]
    return args


def tls_excluded(case_id: str) -> bool:
    return any(case_id.startswith(x.rstrip("*")) for x in TLS_EXCLUDE)


def summarise(cases: dict[str, dict]) -> dict[str, int]:
    counts = {"OK": 0, "NON-STRICT": 0, "INFORMATIONAL": 0, "failed": 0}
    for e in cases.values():
        v = verdict(e)
        counts[v if v in PASS else "failed"] += 1
    return counts


class TlsForwarder:
    """ws:// in, wss:// out: accepts plain TCP on 127.0.0.1 and relays each
    connection, byte for byte as it arrives, over its own TLS connection to
    127.0.0.1:`port`. An end (EOF or error) on either side closes both, so
    who closed first still shows. Runs its own event loop in a thread."""

    def __init__(self, port: int, context: ssl.SSLContext):
        self.port = port
        self.context = context
        self.loop = asyncio.new_event_loop()
        self.listen_port: int | None = None
        self.errors: list[str] = []
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> int:
        self._thread.start()
        if not self._started.wait(10) or self.listen_port is None:
            raise RuntimeError("TLS forwarder did not start")
        return self.listen_port

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._relay, "127.0.0.1", 0))
        self.listen_port = server.sockets[0].getsockname()[1]
        self._started.set()
        try:
            self.loop.run_forever()
        finally:
            server.close()
            self.loop.close()

    async def _relay(self, c_reader, c_writer) -> None:
        try:
            s_reader, s_writer = await asyncio.wait_for(asyncio.open_connection(
                "127.0.0.1", self.port, ssl=self.context, server_hostname="localhost"), 10)
        except (OSError, asyncio.TimeoutError, ssl.SSLError) as e:
            self.errors.append(f"TLS connection to ringfan failed: {e!r}")
            c_writer.close()
            return

        async def pump(reader, writer) -> None:
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (OSError, ssl.SSLError):
                pass

        up = asyncio.ensure_future(pump(c_reader, s_writer))
        down = asyncio.ensure_future(pump(s_reader, c_writer))
        await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
        for task in (up, down):
            task.cancel()
        for w in (s_writer, c_writer):
            w.close()


def tls_handshake_count(port: int) -> int | None:
    """Completed TLS handshakes (full and resumed), from the plain port's
    /metrics; None if it cannot be read."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/metrics")
        body = conn.getresponse().read().decode()
    except OSError:
        return None
    finally:
        conn.close()
    found = [metric_sum(body, f'ringfan_tls_handshakes_total{{result="{r}"}}')
             for r in ("full", "resumed")]
    return None if None in found else sum(found)


def tls_setup(workdir: Path) -> tuple[list[str], ssl.SSLContext]:
    """ringfan's TLS flags and a client context trusting its certificate."""
    import tlscerts  # tests/python; needs the venv's cryptography

    ca = tlscerts.TestCA(workdir)
    leaf = ca.write_leaf("server", ["localhost"], ["127.0.0.1"])
    return ["--listen-tls", "127.0.0.1:0", *leaf.args()], ca.client_context()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", default=str(REPO / "target/release/ringfan"),
                    help="ringfan binary (default: target/release/ringfan)")
    ap.add_argument("--out", default=str(REPO / "reports/autobahn"),
                    help="report directory (default: reports/autobahn)")
    ap.add_argument("--baseline", default=str(REPO / "tests/autobahn/expected.json"),
                    help="expected verdicts (default: tests/autobahn/expected.json)")
    ap.add_argument("--update-baseline", action="store_true",
                    help="write the baseline from this run (only if every case passes)")
    ap.add_argument("--timeout", type=float, default=600,
                    help="overall limit for the kosoku run, seconds (default 600)")
    ap.add_argument("--tls", action="store_true",
                    help="drive ringfan's TLS listener (wss://) through a local "
                         "ws-to-wss forwarder (kosoku has no TLS)")
    args = ap.parse_args()

    server_bin = Path(args.server)
    outdir = Path(args.out)
    baseline_path = Path(args.baseline)
    if not server_bin.exists():
        print(f"autobahn: no server binary at {server_bin} (cargo build --release)",
              file=sys.stderr)
        return 2
    kosoku = find_kosoku()
    baseline = None
    if baseline_path.exists():
        baseline = json.loads(baseline_path.read_text())
    elif not args.update_baseline:
        print(f"autobahn: no baseline at {baseline_path}; run with --update-baseline",
              file=sys.stderr)
        return 2

    clean_outdir(outdir)
    problems: list[str] = []
    started = time.monotonic()
    tls_args: list[str] = []
    forwarder = None
    certdir = None
    tls_handshakes = None
    if args.tls:
        certdir = tempfile.TemporaryDirectory(prefix="autobahn-tls-")
        tls_args, context = tls_setup(Path(certdir.name))
    # /echo is off unless asked for.
    # permessage-deflate on (off by default) for sections 12 and 13.
    server = RingfanProcess(server_bin, "--echo", "--deflate", "on", *tls_args,
                            log=outdir / "server.log")
    try:
        port = server.wait_ready(30)
        if port is None:
            raise RuntimeError(
                f"server did not print its port(s) within 30s "
                f"(exit status {server.proc.returncode}); see {server.log_path}"
            )
        if args.tls:
            forwarder = TlsForwarder(server.tls_port, context)
            port = forwarder.start()
            print(f"autobahn: over TLS: ws://127.0.0.1:{port} is forwarded to "
                  f"wss://127.0.0.1:{server.tls_port}", flush=True)
        url = f"ws://127.0.0.1:{port}/echo"
        cmd = [kosoku, url, "-o", str(outdir), *kosoku_args(args.tls)]
        print(f"autobahn: {' '.join(cmd)}", flush=True)
        try:
            run = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                                 text=True, timeout=args.timeout)
            (outdir / "kosoku.log").write_text(run.stdout + run.stderr)
            # kosoku exits 1 when a case failed; the verdicts below say which.
            if run.returncode not in (0, 1):
                problems.append(f"kosoku exited with status {run.returncode}: "
                                f"{(run.stderr or run.stdout).strip()[-2000:]}")
        except subprocess.TimeoutExpired:
            problems.append(f"kosoku did not finish within {args.timeout:.0f}s")
        if server.proc.poll() is not None:
            problems.append(f"server exited during the run (status {server.proc.returncode})")
        elif args.tls:
            tls_handshakes = tls_handshake_count(server.port)
            print(f"autobahn: ringfan counted {tls_handshakes} TLS handshakes", flush=True)
    except RuntimeError as e:
        problems.append(str(e))
    finally:
        status, killed = server.stop()
        if forwarder is not None:
            forwarder.stop()
            problems += forwarder.errors[:10]
        if certdir is not None:
            certdir.cleanup()
    elapsed = time.monotonic() - started
    if killed:
        print("autobahn: warning: server ignored SIGTERM for 10s and was killed")

    results = load_results(outdir)
    counts = summarise(results)
    print(f"autobahn: {len(results)} cases: {counts['OK']} OK, "
          f"{counts['NON-STRICT']} NON-STRICT, {counts['INFORMATIONAL']} INFORMATIONAL, "
          f"{counts['failed']} failed ({elapsed:.1f}s)")
    by_b: dict[str, int] = {}
    by_c: dict[str, int] = {}
    for e in results.values():
        by_b[e.get("behavior")] = by_b.get(e.get("behavior"), 0) + 1
        by_c[e.get("behaviorClose")] = by_c.get(e.get("behaviorClose"), 0) + 1
    print(f"autobahn: behavior {dict(sorted(by_b.items()))}; "
          f"behaviorClose {dict(sorted(by_c.items()))}")

    if args.tls and tls_handshakes is not None and tls_handshakes < len(results):
        # Every case is a connection of its own: fewer handshakes than cases
        # would mean that some did not go over TLS.
        problems.append(f"only {tls_handshakes} TLS handshakes for {len(results)} cases")
    ids = sorted(results, key=case_key)
    failed = [c for c in ids if not passed(results[c])]
    for c in failed:
        e = results[c]
        problems.append(f"case {c}: behavior {e.get('behavior')}, behaviorClose "
                        f"{e.get('behaviorClose')} (see {outdir / e.get('reportfile', '')})")
    not_ok = [c for c in ids if c not in failed and verdict(results[c]) != "OK"]
    if not_ok:
        print("autobahn: not OK but passing: " + ", ".join(
            f"{c} {verdict(results[c])}" for c in not_ok))

    if args.update_baseline:
        if args.tls:
            problems.append("baseline not updated: write it from a plain run "
                            "(the TLS run leaves sections 12 and 13 out)")
        elif problems or not results:
            problems.append("baseline not updated: the run did not pass")
        else:
            new = make_baseline(results, baseline)
            baseline_path.write_text(dump_baseline(new))
            print(f"autobahn: wrote {baseline_path} ({new['count']} cases)")
    elif baseline is not None:
        expected = baseline.get("cases", {})
        want = baseline.get("count", len(expected))
        if args.tls:
            expected = {c: e for c, e in expected.items() if not tls_excluded(c)}
            want = len(expected)
        if len(results) != want:
            problems.append(f"ran {len(results)} cases, the baseline has {want}")
            missing = sorted(set(expected) - set(results), key=case_key)
            extra = sorted(set(results) - set(expected), key=case_key)
            if missing:
                problems.append(f"missing cases: {' '.join(missing[:40])}"
                                + (" ..." if len(missing) > 40 else ""))
            if extra:
                problems.append(f"cases not in the baseline: {' '.join(extra[:40])}"
                                + (" ..." if len(extra) > 40 else ""))
        better, flipped = [], []
        for c in ids:
            if c not in expected or c in failed:
                continue
            for k in ("behavior", "behaviorClose"):
                now, was = results[c].get(k), expected[c].get(k)
                if RANK.get(now, 0) < RANK.get(was, 0):
                    problems.append(f"case {c}: {k} regressed from {was} to {now}")
                elif RANK.get(now, 0) > RANK.get(was, 0):
                    # A case with a note is a known timing flip: no news.
                    (flipped if expected[c].get("note") else better).append(
                        f"{c} {k} {was} -> {now}")
        if flipped:
            print(f"autobahn: {len(flipped)} timing-dependent cases (see their 'note' in the "
                  f"baseline) did better this run: {', '.join(flipped)}")
        if better:
            print("autobahn: note: better than the baseline: " + ", ".join(better)
                  + "; consider --update-baseline")

    if status not in (0, None) and not killed:
        print(f"autobahn: note: server exit status after SIGTERM: {status}")
    # A closing line in the plain "N passed, N failed" form that CI reads.
    n_failed = len(failed)
    if problems:
        print(f"autobahn: FAILED ({len(problems)} problems):")
        for p in problems:
            print(f"  - {p}")
        print(f"autobahn: {len(results) - n_failed} passed, {max(n_failed, 1)} failed")
        return 1
    print("autobahn: passed")
    print(f"autobahn: {len(results)} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
