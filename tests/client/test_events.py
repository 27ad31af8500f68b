"""Events as an iterator, on both daemons: the daemon's own and published ones."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from pycontainerd import Client
from pycontainerd.api.containerd.events import image_pb2, namespace_pb2
from pycontainerd.client import Event, EventStream
from tests.client.conftest import Env

SYNC = "/test/sync"


def live(c: Client, *filters: str) -> EventStream:
    """A subscription the daemon has registered: a subscribe call returns before that, so
    ``/test/sync`` events are published until one comes through (later ones are skipped)."""
    stream = c.events(*filters, f'topic=="{SYNC}"')
    stop = threading.Event()

    def pump() -> None:
        while not stop.is_set():
            c.publish(SYNC, image_pb2.ImageUpdate(name="sync"))
            stop.wait(0.1)

    pumping = threading.Thread(target=pump)
    pumping.start()
    try:
        assert [e.topic for e in _take(stream, 1, skip_sync=False)] == [SYNC]
    finally:
        stop.set()
        pumping.join()
    return stream


def _take(stream: EventStream, n: int, *, skip_sync: bool = True) -> list[Event]:
    out: list[Event] = []
    it: Iterator[Event] = (e for e in stream if not (skip_sync and e.topic == SYNC))
    guard = threading.Timer(30, stream.close)  # a lost event fails the test, not the run
    guard.start()
    try:
        for ev in it:
            out.append(ev)
            if len(out) == n:
                break
    finally:
        guard.cancel()
    return out


def test_events_of_the_namespace_and_published(env: Env) -> None:
    c = env.client
    with live(c, f'namespace=="{env.namespace}"') as stream:
        c.containers.create("ev", spec={"ociVersion": "1.0.2"})
        c.publish("/test/custom", image_pb2.ImageCreate(name="published"))
        c.containers.delete("ev")
        events = _take(stream, 3)
    topics = [e.topic for e in events]
    assert topics == ["/containers/create", "/test/custom", "/containers/delete"]
    assert all(e.namespace == env.namespace for e in events)
    assert events[0].event.id == "ev"  # type: ignore[attr-defined]
    custom = events[1]
    assert isinstance(custom.event, image_pb2.ImageCreate)
    assert custom.event.name == "published"
    assert custom.type_url.endswith(".ImageCreate")
    assert events[0].timestamp_ns <= custom.timestamp_ns <= events[2].timestamp_ns
    assert custom.timestamp.year >= 2024
    assert custom.envelope.topic == "/test/custom"


def test_filters_by_topic(env: Env) -> None:
    c = env.client
    with live(c, 'topic~="^/namespaces/"', f'namespace=="{env.namespace}"') as stream:
        name = env.namespace + "-x"
        c.namespaces.create(name, {"k": "v"})
        c.namespaces.delete(name)
        events = _take(stream, 2)
    assert [e.topic for e in events] == ["/namespaces/create", "/namespaces/delete"]
    created = events[0].event
    assert isinstance(created, namespace_pb2.NamespaceCreate)
    assert (created.name, dict(created.labels)) == (name, {"k": "v"})


def test_forward_keeps_namespace_and_timestamp(env: Env) -> None:
    c = env.client
    with live(c, 'topic=="/test/forwarded"') as stream:
        c.publish("/test/forwarded", image_pb2.ImageDelete(name="one"))
        first = _take(stream, 1)[0]
        c.forward(first.envelope)
        again = _take(stream, 1)[0]
    assert (again.namespace, again.timestamp_ns) == (first.namespace, first.timestamp_ns)
    assert again.event == first.event


def test_close_from_another_thread_ends_the_iteration(env: Env) -> None:
    stream = env.client.events('topic=="/never"')
    timer = threading.Timer(0.2, stream.close)
    timer.start()
    assert list(stream) == []
    timer.join()
