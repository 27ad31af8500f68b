"""The Events service through the Python client: what the services publish, Publish, Forward,
filters, and a subscription's end."""

from __future__ import annotations

import hashlib
import io
import itertools
import queue
import threading
import time
from collections.abc import Iterator

import pytest
from google.protobuf import any_pb2

from pycontainerd import Client, errdefs
from pycontainerd.api.containerd.events import content_pb2, image_pb2, namespace_pb2, snapshot_pb2
from pycontainerd.client import Event, EventStream
from pycontainerd.content import write_blob
from pycontainerd.descriptor import Descriptor
from pycontainerd.events import Envelope, marshal_any
from pycontainerd.images.image import Image
from tests.fixtures.daemon import Daemon

pytestmark = pytest.mark.integration

SYNC_TOPIC = "/test/sync"


@pytest.fixture
def client(daemon: Daemon) -> Iterator[Client]:
    with Client(daemon.address) as c:
        yield c


class Collector:
    """A subscription read by a thread; :meth:`ready` waits until the daemon delivers to it."""

    def __init__(self, client: Client, *filters: str) -> None:
        self.client = client
        # any filter matches: add one for the markers, unless every event comes anyway
        marker = (f'topic=="{SYNC_TOPIC}"',) if filters else ()
        self.stream: EventStream = client.events(*filters, *marker)
        self.events: queue.Queue[Event | BaseException | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for ev in self.stream:
                self.events.put(ev)
        except BaseException as exc:
            self.events.put(exc)
        self.events.put(None)

    def ready(self) -> None:
        """Publish markers until one arrives: the subscription is in place on the daemon."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            self.client.publish(SYNC_TOPIC, namespace_pb2.NamespaceUpdate(name="sync"))
            try:
                ev = self.events.get(timeout=0.2)
            except queue.Empty:
                continue
            assert isinstance(ev, Event), ev
            while True:  # drop the other markers
                try:
                    ev = self.events.get(timeout=0.3)
                except queue.Empty:
                    return
                assert isinstance(ev, Event), ev
        raise AssertionError("the subscription never received a marker")

    def _next(self, timeout: float) -> Event:
        """The next event that is not a marker (another collector's may arrive any time)."""
        while True:
            ev = self.events.get(timeout=timeout)
            assert isinstance(ev, Event), ev
            if ev.topic != SYNC_TOPIC:
                return ev

    def take(self, n: int) -> list[Event]:
        return [self._next(10) for _ in range(n)]

    def nothing_more(self) -> None:
        with pytest.raises(queue.Empty):
            self._next(0.3)

    def close(self) -> None:
        self.stream.close()
        self.thread.join(10)
        assert not self.thread.is_alive()


def test_services_publish_their_events(client: Client) -> None:
    col = Collector(client, 'topic~="^/(namespaces|images|content)/"')
    try:
        col.ready()
        client.namespaces.create("evns", {"a": "b"})
        client.namespaces.set_label("evns", "c", "d")
        target = Descriptor("application/vnd.oci.image.index.v1+json", "sha256:" + "ab" * 32, 10)
        client.images.create(Image("example.com/ev:1", target, {"k": "v"}))
        client.images.update(Image("example.com/ev:1", target, {"k": "w"}), "labels")
        client.images.delete("example.com/ev:1")
        client.namespaces.delete("evns")
        got = col.take(6)
        assert [(e.namespace, e.topic, e.event) for e in got] == [
            (
                "default",  # the caller's namespace, as containerd publishes it
                "/namespaces/create",
                namespace_pb2.NamespaceCreate(name="evns", labels={"a": "b"}),
            ),
            (
                "default",
                "/namespaces/update",
                namespace_pb2.NamespaceUpdate(name="evns", labels={"c": "d"}),
            ),
            (
                "default",
                "/images/create",
                image_pb2.ImageCreate(name="example.com/ev:1", labels={"k": "v"}),
            ),
            (
                "default",
                "/images/update",
                image_pb2.ImageUpdate(name="example.com/ev:1", labels={"k": "w"}),
            ),
            ("default", "/images/delete", image_pb2.ImageDelete(name="example.com/ev:1")),
            ("evns", "/namespaces/delete", namespace_pb2.NamespaceDelete(name="evns")),
        ]
        assert got[2].type_url == "containerd.services.images.v1.ImageCreate"
        assert got[0].type_url == "containerd.events.NamespaceCreate"
        assert all(a.timestamp_ns <= b.timestamp_ns for a, b in itertools.pairwise(got))
        assert abs(got[0].timestamp.timestamp() - time.time()) < 60
        col.nothing_more()
    finally:
        col.close()


def test_snapshot_events(client: Client) -> None:
    col = Collector(client, 'topic~="^/snapshot/"')
    try:
        col.ready()
        with client.with_lease():
            sn = client.snapshots("native")
            sn.prepare("ev-active", "")
            sn.commit("ev-layer", "ev-active")
            sn.remove("ev-layer")
        got = col.take(3)
        assert [(e.namespace, e.topic, e.event) for e in got] == [
            ("default", "/snapshot/prepare", snapshot_pb2.SnapshotPrepare(key="ev-active")),
            (
                "default",
                "/snapshot/commit",
                snapshot_pb2.SnapshotCommit(key="ev-active", name="ev-layer"),
            ),
            ("default", "/snapshot/remove", snapshot_pb2.SnapshotRemove(key="ev-layer")),
        ]
        assert got[0].type_url == "containerd.events.SnapshotPrepare"
    finally:
        col.close()


def test_content_delete_event(client: Client) -> None:
    col = Collector(client, 'topic=="/content/delete"')
    try:
        col.ready()
        data = b"content delete event"
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        with client.with_lease():
            desc = Descriptor("", digest, len(data))
            write_blob(client.content, "ev-ref", io.BytesIO(data), desc)
            client.content.delete(digest)
        [ev] = col.take(1)
        assert (ev.namespace, ev.event) == ("default", content_pb2.ContentDelete(digest=digest))
    finally:
        col.close()


def test_publish_forward_and_filters(client: Client) -> None:
    every = Collector(client)
    mine = Collector(client, 'event.name=="mine"', 'namespace=="fwd"')
    try:
        every.ready()
        mine.ready()
        client.publish("/my/topic", namespace_pb2.NamespaceDelete(name="mine"))
        client.publish("/my/other", namespace_pb2.NamespaceDelete(name="theirs"))
        unknown = any_pb2.Any(type_url="example.com/Custom", value=b"\x01\x02")
        client.publish("/my/raw", unknown)
        env = Envelope(
            1_600_000_000_000_000_007,
            "fwd",
            "/tasks/exit",
            marshal_any(namespace_pb2.NamespaceDelete()),
        )
        client.forward(env)

        got = every.take(4)
        assert [e.topic for e in got] == ["/my/topic", "/my/other", "/my/raw", "/tasks/exit"]
        assert got[2].event == unknown
        assert got[2].type_url == "example.com/Custom"
        assert got[3].envelope == env  # forwarded as it was: its namespace and timestamp
        assert [e.topic for e in mine.take(2)] == ["/my/topic", "/tasks/exit"]
        mine.nothing_more()
    finally:
        every.close()
        mine.close()


def test_bad_requests(client: Client) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="must start with"):
        client.publish("nope", namespace_pb2.NamespaceDelete())
    with pytest.raises(errdefs.InvalidArgument, match="timestamp must be set"):
        client.forward(Envelope(0, "default", "/a", any_pb2.Any()))
    with (
        client.events("topic==") as stream,
        pytest.raises(errdefs.InvalidArgument, match="filters"),
    ):
        next(iter(stream))


def test_closing_a_stream_ends_iteration(client: Client) -> None:
    col = Collector(client)
    col.ready()
    col.close()
    assert col.events.get(timeout=5) is None  # ended without error
