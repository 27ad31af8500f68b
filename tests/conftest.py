"""Shared fixtures: a real daemon on a private socket, root and state in temporary directories."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.daemon import Daemon, make_daemon


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A running pycontainerd, stopped with SIGTERM after the test: it must exit with 0.

    Its startup garbage collection is done before the test begins, so blobs the test writes
    without a lease or a reference stay until the test deletes something (as containerd's).
    """
    d = make_daemon(tmp_path)
    try:
        d.start()
        d.collect_garbage()
        yield d
        status = d.stop()
        assert status == 0, f"daemon exited with {status} on SIGTERM:\n{d.logs()}"
    finally:
        d.stop()
        d.cleanup()
