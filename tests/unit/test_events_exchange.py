"""The exchange without a daemon: topics, envelopes, filters, bounded queues, ctr's output."""

from __future__ import annotations

import asyncio
import threading

import pytest
from google.protobuf import any_pb2, timestamp_pb2

from pycontainerd import errdefs
from pycontainerd.api.containerd.events import container_pb2, image_pb2, namespace_pb2, task_pb2
from pycontainerd.cli.events import format_event, go_json, go_time
from pycontainerd.events import (
    Envelope,
    Exchange,
    SlowSubscriber,
    marshal_any,
    message_field,
    type_url,
    unmarshal_any,
    validate_topic,
)


@pytest.mark.parametrize("topic", ["/a", "/namespaces/create", "/tasks/exec-added", "/a/b.c/d_e"])
def test_valid_topics(topic: str) -> None:
    validate_topic(topic)


@pytest.mark.parametrize(
    ("topic", "why"),
    [
        ("", "must not be empty"),
        ("a/b", "must start with '/'"),
        ("/", "must have at least one component"),
        ("/a//b", 'failed validation on component ""'),
        ("/a/../b", 'failed validation on component ".."'),
        ("/a/b c", 'failed validation on component "b c"'),
    ],
)
def test_invalid_topics(topic: str, why: str) -> None:
    with pytest.raises(errdefs.InvalidArgument, match=why):
        validate_topic(topic)


def test_type_urls_are_bare_proto_names_as_containerd_sends_them() -> None:
    assert type_url(task_pb2.TaskExit()) == "containerd.events.TaskExit"
    assert type_url(image_pb2.ImageCreate()) == "containerd.services.images.v1.ImageCreate"
    event = namespace_pb2.NamespaceCreate(name="x", labels={"a": "b"})
    packed = marshal_any(event)
    assert packed.type_url == "containerd.events.NamespaceCreate"
    assert unmarshal_any(packed) == event
    assert marshal_any(packed) is packed  # an Any goes as it is
    prefixed = any_pb2.Any(type_url="types.containerd.io/" + packed.type_url, value=packed.value)
    assert unmarshal_any(prefixed) == event
    assert unmarshal_any(any_pb2.Any(type_url="example.Unknown", value=b"x")) is None


def test_message_fields_as_containerds_fieldpath_plugin() -> None:
    create = image_pb2.ImageCreate(name="docker.io/x:1", labels={"a.b": "c", "e": ""})
    assert message_field(create, ["name"]) == ("docker.io/x:1", True)
    assert message_field(create, ["labels", "a", "b"]) == ("c", True)
    assert message_field(create, ["labels", "e"]) == ("", True)
    assert message_field(create, ["labels", "nope"]) == ("", False)
    assert message_field(image_pb2.ImageCreate(), ["name"]) == ("", False)
    exit_ = task_pb2.TaskExit(container_id="c1", pid=3, exit_status=1)
    assert message_field(exit_, ["container_id"]) == ("c1", True)
    assert message_field(exit_, ["pid"]) == ("", False)  # numbers are not filterable
    assert message_field(exit_, ["exited_at"]) == ("", False)
    container = container_pb2.ContainerCreate(
        id="c1",
        runtime=container_pb2.ContainerCreate.Runtime(
            name="io.containerd.runc.v2",
            options=marshal_any(namespace_pb2.NamespaceDelete(name="inner")),
        ),
    )
    assert message_field(container, ["runtime", "name"]) == ("io.containerd.runc.v2", True)
    assert message_field(container, ["runtime", "options", "name"]) == ("inner", True)
    paused = task_pb2.TaskPaused(container_id="c1")
    assert message_field(paused, ["container_id"]) == ("c1", True)


def test_envelope_adaptor() -> None:
    env = Envelope.now("ns1", "/images/create", image_pb2.ImageCreate(name="img"))
    assert env.field(["topic"]) == ("/images/create", True)
    assert env.field(["namespace"]) == ("ns1", True)
    assert env.field(["event", "name"]) == ("img", True)
    assert env.field(["timestamp"]) == ("", False)
    assert env.field([]) == ("", False)


async def _take(sub: object, n: int, timeout: float = 2.0) -> list[Envelope]:
    out: list[Envelope] = []
    it = aiter(sub)  # type: ignore[call-overload]
    for _ in range(n):
        out.append(await asyncio.wait_for(anext(it), timeout))
    return out


def test_publish_subscribe_with_filters() -> None:
    asyncio.run(_publish_subscribe_with_filters())


async def _publish_subscribe_with_filters() -> None:
    ex = Exchange()
    every = ex.subscribe()
    images = ex.subscribe('topic~="^/images/"')
    named = ex.subscribe('event.name=="b"', 'namespace=="other"')
    labelled = ex.subscribe("event.labels.k==v")
    ex.publish("default", "/images/create", image_pb2.ImageCreate(name="a", labels={"k": "v"}))
    ex.publish("default", "/namespaces/create", namespace_pb2.NamespaceCreate(name="b"))
    ex.publish("other", "/images/delete", image_pb2.ImageDelete(name="a"))

    got = await _take(every, 3)
    assert [e.topic for e in got] == ["/images/create", "/namespaces/create", "/images/delete"]
    assert [e.namespace for e in got] == ["default", "default", "other"]
    assert got[0].timestamp <= got[1].timestamp <= got[2].timestamp
    assert got[0].decode() == image_pb2.ImageCreate(name="a", labels={"k": "v"})
    assert [e.topic for e in await _take(images, 2)] == ["/images/create", "/images/delete"]
    assert [e.topic for e in await _take(named, 2)] == ["/namespaces/create", "/images/delete"]
    assert [e.topic for e in await _take(labelled, 1)] == ["/images/create"]
    for sub in (every, images, named, labelled):
        sub.close()
        assert [e async for e in sub] == []
    assert ex.subscribers() == 0


def test_publish_refuses_bad_input() -> None:
    asyncio.run(_publish_refuses_bad_input())


async def _publish_refuses_bad_input() -> None:
    ex = Exchange()
    with pytest.raises(errdefs.FailedPrecondition, match="namespace is required"):
        ex.publish("", "/a", namespace_pb2.NamespaceDelete())
    with pytest.raises(errdefs.InvalidArgument, match="must start with"):
        ex.publish("default", "a", namespace_pb2.NamespaceDelete())
    with pytest.raises(errdefs.InvalidArgument, match="failed parsing subscription filters"):
        ex.subscribe("topic==")
    assert ex.subscribers() == 0


def test_forward_keeps_the_envelope_and_validates_it() -> None:
    asyncio.run(_forward_keeps_the_envelope_and_validates_it())


async def _forward_keeps_the_envelope_and_validates_it() -> None:
    ex = Exchange()
    sub = ex.subscribe()
    env = Envelope(1_700_000_000_123_456_789, "ns", "/tasks/exit", marshal_any(task_pb2.TaskExit()))
    ex.forward(env)
    assert await _take(sub, 1) == [env]
    with pytest.raises(errdefs.InvalidArgument, match="timestamp must be set"):
        ex.forward(Envelope(0, "ns", "/a", any_pb2.Any()))
    with pytest.raises(errdefs.InvalidArgument, match="invalid namespace"):
        ex.forward(Envelope(1, "bad ns", "/a", any_pb2.Any()))
    with pytest.raises(errdefs.InvalidArgument, match="envelope topic"):
        ex.forward(Envelope(1, "ns", "", any_pb2.Any()))
    sub.close()


def test_a_slow_subscriber_is_ended_not_grown() -> None:
    asyncio.run(_a_slow_subscriber_is_ended_not_grown())


async def _a_slow_subscriber_is_ended_not_grown() -> None:
    ex = Exchange(queue_size=3)
    slow = ex.subscribe()
    fast = ex.subscribe()
    for i in range(5):
        ex.publish("default", "/n", namespace_pb2.NamespaceDelete(name=f"n{i}"))
        await _take(fast, 1)
    assert ex.subscribers() == 1  # the slow one is gone, the fast one stays
    got = await _take(slow, 3)  # what it had queued still arrives
    assert [e.decode() for e in got] == [
        namespace_pb2.NamespaceDelete(name=f"n{i}") for i in range(3)
    ]
    with pytest.raises(SlowSubscriber, match="too slow") as info:
        await anext(aiter(slow))
    assert info.value.code == errdefs.Code.RESOURCE_EXHAUSTED
    fast.close()


def test_publish_from_another_thread_wakes_the_subscriber() -> None:
    asyncio.run(_publish_from_another_thread_wakes_the_subscriber())


async def _publish_from_another_thread_wakes_the_subscriber() -> None:
    ex = Exchange()
    async with ex.subscribe() as sub:
        waiting = asyncio.ensure_future(_take(sub, 2))
        await asyncio.sleep(0.05)

        def publish() -> None:
            for name in ("a", "b"):
                ex.publish("default", "/t", namespace_pb2.NamespaceDelete(name=name))

        t = threading.Thread(target=publish)
        t.start()
        t.join()
        got = await waiting
        assert [e.decode() for e in got] == [namespace_pb2.NamespaceDelete(name=n) for n in "ab"]
    assert ex.subscribers() == 0


def test_close_wakes_a_waiting_subscriber_and_the_exchange_closes_all() -> None:
    asyncio.run(_close_wakes_a_waiting_subscriber_and_the_exchange_closes_all())


async def _close_wakes_a_waiting_subscriber_and_the_exchange_closes_all() -> None:
    ex = Exchange()
    sub = ex.subscribe()
    waiting = asyncio.ensure_future(anext(aiter(sub)))
    await asyncio.sleep(0.01)
    ex.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, 2)
    assert ex.subscribers() == 0


def test_ctr_output_format() -> None:
    assert go_time(1_700_000_000_123_456_789) == "2023-11-14 22:13:20.123456789 +0000 UTC"
    assert go_time(1_700_000_000_120_000_000) == "2023-11-14 22:13:20.12 +0000 UTC"
    assert go_time(1_700_000_000_000_000_000) == "2023-11-14 22:13:20 +0000 UTC"
    assert go_json(namespace_pb2.NamespaceCreate(name="x", labels={"b": "2", "a": "<&>"})) == (
        '{"name":"x","labels":{"a":"\\u003c\\u0026\\u003e","b":"2"}}'
    )
    assert go_json(image_pb2.ImageDelete()) == "{}"
    exited = task_pb2.TaskExit(container_id="c", id="c", pid=42, exit_status=0)
    assert go_json(exited) == (
        '{"container_id":"c","id":"c","pid":42,"exited_at":"0001-01-01T00:00:00Z"}'
    )
    exited.exited_at.CopyFrom(timestamp_pb2.Timestamp(seconds=1_700_000_000, nanos=5_000))
    exited.exit_status = 3
    assert go_json(exited) == (
        '{"container_id":"c","id":"c","pid":42,"exit_status":3,'
        '"exited_at":"2023-11-14T22:13:20.000005Z"}'
    )
    line = format_event(
        1_700_000_000_000_000_001, "default", "/images/delete", image_pb2.ImageDelete(name="i")
    )
    assert line == '2023-11-14 22:13:20.000000001 +0000 UTC default /images/delete {"name":"i"}'
