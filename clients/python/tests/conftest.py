"""Fixtures for the client tests (helpers in support.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import Broker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Any]:
    """Factory: `broker(*flags, port=None)` starts a ringfan; every one
    started is stopped when the test ends, however it ends."""
    started: list[Broker] = []

    def start(*flags: str, port: int | None = None) -> Broker:
        b = Broker(flags, tmp_path, port)
        started.append(b)
        return b

    try:
        yield start
    finally:
        for b in started:
            b.stop(kill=True)
