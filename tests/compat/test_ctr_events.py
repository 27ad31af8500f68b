"""containerd's ``ctr events`` against our daemon: it decodes what we publish, prints the lines
``pyctr events`` prints, and its filters select as containerd's do."""

from __future__ import annotations

import queue
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from pycontainerd import Client
from pycontainerd.api.containerd.events import namespace_pb2
from pycontainerd.descriptor import Descriptor
from pycontainerd.images.image import Image
from tests.fixtures.daemon import PYCTR, Daemon

pytestmark = pytest.mark.compat

SYNC_TOPIC = "/test/sync"
LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{1,9})? \+0000 UTC) (\S+) (\S+) (.*)$")
TARGET = Descriptor("application/vnd.oci.image.index.v1+json", "sha256:" + "cd" * 32, 10)


@pytest.fixture(autouse=True)
def _ctr_installed() -> None:
    assert shutil.which("ctr"), "ctr is missing: apt-get install containerd (scripts/setup does)"


class Watcher:
    """A long-running ``events`` command whose output lines are read by a thread."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _next(self, timeout: float) -> tuple[str, str, str, str]:
        while True:
            line = self.lines.get(timeout=timeout)
            assert line is not None, f"events exited: {self.stop()}"
            m = LINE.match(line)
            assert m, f"unexpected line {line!r}"
            if m.group(3) != SYNC_TOPIC:
                return m.group(1), m.group(2), m.group(3), m.group(4)

    def ready(self, client: Client) -> None:
        """Publish markers until the command prints one: its subscription is in place."""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"events exited: {self.stop()}"
            client.publish(SYNC_TOPIC, namespace_pb2.NamespaceUpdate(name="sync"))
            try:
                line = self.lines.get(timeout=0.3)
            except queue.Empty:
                continue
            assert line is not None
            assert SYNC_TOPIC in line, line
            return
        raise AssertionError("events never printed a marker")

    def take(self, n: int) -> list[tuple[str, str, str, str]]:
        return [self._next(10) for _ in range(n)]

    def nothing_more(self) -> None:
        with pytest.raises(queue.Empty):
            self._next(0.5)

    def stop(self) -> str:
        """Kill the command (it runs until killed) and return its stderr."""
        if self.proc.poll() is None:
            self.proc.kill()
        _, err = self.proc.communicate(timeout=10)
        self.thread.join(10)
        return err


@pytest.fixture
def client(daemon: Daemon) -> Iterator[Client]:
    with Client(daemon.address) as c:
        yield c


def _watch(argv: list[str]) -> Iterator[Watcher]:
    w = Watcher(argv)
    try:
        yield w
    finally:
        w.stop()


def test_ctr_events_shows_namespace_and_image_events(daemon: Daemon, client: Client) -> None:
    ctr_gen = _watch(["ctr", "-a", daemon.address, "events"])
    pyctr_gen = _watch([*PYCTR, "-a", daemon.address, "events"])
    ctr_w, pyctr_w = next(ctr_gen), next(pyctr_gen)
    try:
        ctr_w.ready(client)
        pyctr_w.ready(client)
        daemon.ctr("namespaces", "create", "evx", "a=b")
        client.images.create(Image("example.com/ev:1", TARGET, {"k": "v"}))
        daemon.ctr("images", "label", "example.com/ev:1", "k=w")
        daemon.ctr("images", "rm", "example.com/ev:1")
        daemon.ctr("namespaces", "rm", "evx")
        got = ctr_w.take(5)
        assert [(ns, topic, body) for _, ns, topic, body in got] == [
            ("default", "/namespaces/create", '{"name":"evx","labels":{"a":"b"}}'),
            ("default", "/images/create", '{"name":"example.com/ev:1","labels":{"k":"v"}}'),
            ("default", "/images/update", '{"name":"example.com/ev:1","labels":{"k":"w"}}'),
            ("default", "/images/delete", '{"name":"example.com/ev:1"}'),
            ("evx", "/namespaces/delete", '{"name":"evx"}'),
        ]
        # pyctr prints the very same lines, timestamps included
        assert pyctr_w.take(5) == got
        ctr_w.nothing_more()
    finally:
        for gen in (ctr_gen, pyctr_gen):
            gen.close()
    assert ctr_w.proc.poll() is not None
    assert pyctr_w.proc.poll() is not None


def test_ctr_events_filters(daemon: Daemon, client: Client) -> None:
    argv = ["ctr", "-a", daemon.address, "events"]
    gen = _watch([*argv, 'topic=="/namespaces/create"', f'topic=="{SYNC_TOPIC}"'])
    by_name_gen = _watch([*argv, 'event.name~="^keep"', f'topic=="{SYNC_TOPIC}"'])
    w, by_name = next(gen), next(by_name_gen)
    try:
        w.ready(client)
        by_name.ready(client)
        daemon.ctr("namespaces", "create", "keep1")
        daemon.ctr("namespaces", "create", "drop1")
        daemon.ctr("namespaces", "rm", "keep1", "drop1")
        assert [(t, b) for _, _, t, b in w.take(2)] == [
            ("/namespaces/create", '{"name":"keep1"}'),
            ("/namespaces/create", '{"name":"drop1"}'),
        ]
        w.nothing_more()
        assert [(t, b) for _, _, t, b in by_name.take(2)] == [
            ("/namespaces/create", '{"name":"keep1"}'),
            ("/namespaces/delete", '{"name":"keep1"}'),
        ]
        by_name.nothing_more()
    finally:
        gen.close()
        by_name_gen.close()


def test_ctr_events_bad_filter_fails(daemon: Daemon) -> None:
    result = subprocess.run(
        ["ctr", "-a", daemon.address, "events", "topic=="],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "failed parsing subscription filters" in result.stderr
