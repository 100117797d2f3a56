"""`ringfan --version` names the git commit it was built from (build.rs
stamps release builds; a debug build says `dev`)."""

from __future__ import annotations

import subprocess

from conftest import REPO, ringfan_bin


def test_version_names_the_commit():
    out = subprocess.run([str(ringfan_bin()), "--version"], capture_output=True, text=True,
                         timeout=10, check=True).stdout.strip()
    head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO,
                          capture_output=True, text=True, timeout=10)
    version = out.split()[1]
    if out.endswith("(commit dev)"):
        return  # a debug binary (RINGFAN_BIN=target/debug/ringfan)
    # The binary may be older than the checkout's last commit only when it
    # was built before it; CI builds it from this very checkout.
    want = head.stdout.strip() if head.returncode == 0 else "unknown"
    assert out == f"ringfan {version} (commit {want})"
