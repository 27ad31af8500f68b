"""``pyctr events [FILTER...]``: print the daemon's events as ``ctr events`` does.

One line per event: the timestamp as Go prints a ``time.Time``, the namespace, the topic and
the event as Go's ``encoding/json`` renders containerd's event structs (proto field names,
empty fields left out, timestamps in RFC 3339).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from datetime import UTC, datetime
from typing import Any

from google.protobuf import any_pb2, timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from pycontainerd.cli.common import client_from

__all__ = ["add_parser", "format_event", "go_json", "go_time"]

_TIMESTAMP = "google.protobuf.Timestamp"
_ANY = "google.protobuf.Any"


def _fraction(nanos: int) -> str:
    """Go's ``.999999999``: the fraction without trailing zeros, nothing when zero."""
    return f".{nanos:09d}".rstrip("0") if nanos else ""


def go_time(ns: int) -> str:
    """A UTC time as Go's ``time.Time.String``: ``2006-01-02 15:04:05.999999999 +0000 UTC``."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    base = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{base}{_fraction(nanos)} +0000 UTC"


def _rfc3339(ts: timestamp_pb2.Timestamp | None) -> str:
    if ts is None:
        return "0001-01-01T00:00:00Z"
    base = datetime.fromtimestamp(ts.seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}{_fraction(ts.nanos)}Z"


def _value(fd: Any, value: Any) -> Any:
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        return _message(value)
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode()
    return value


def _message(msg: Message) -> Any:
    name = msg.DESCRIPTOR.full_name
    if name == _TIMESTAMP:
        assert isinstance(msg, timestamp_pb2.Timestamp)
        return _rfc3339(msg)
    if name == _ANY:
        assert isinstance(msg, any_pb2.Any)
        out: dict[str, Any] = {}
        if msg.type_url:
            out["type_url"] = msg.type_url
        if msg.value:
            out["value"] = base64.b64encode(msg.value).decode()
        return out
    obj: dict[str, Any] = {}
    for fd in msg.DESCRIPTOR.fields:
        value = getattr(msg, fd.name)
        mt = fd.message_type
        if mt is not None and mt.GetOptions().map_entry:
            if value:
                vfd = mt.fields_by_name["value"]
                obj[fd.name] = {k: _value(vfd, value[k]) for k in sorted(value)}
        elif fd.is_repeated:
            if value:
                obj[fd.name] = [_value(fd, v) for v in value]
        elif mt is not None:
            if mt.full_name == _TIMESTAMP:
                # containerd's event timestamps are non-nullable: always printed
                obj[fd.name] = _rfc3339(value if msg.HasField(fd.name) else None)
            elif msg.HasField(fd.name):
                obj[fd.name] = _message(value)
        elif value:
            obj[fd.name] = _value(fd, value)
    return obj


def go_json(msg: Message) -> str:
    """``msg`` as Go's ``json.Marshal`` of containerd's generated struct."""
    text = json.dumps(_message(msg), separators=(",", ":"), ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(ch, esc)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def format_event(timestamp_ns: int, namespace: str, topic: str, event: Message | None) -> str:
    """One ``ctr events`` line."""
    body = go_json(event) if event is not None else ""
    return f"{go_time(timestamp_ns)} {namespace} {topic} {body}"


def _events(args: argparse.Namespace) -> int:
    with client_from(args) as client, client.events(*args.filters) as stream:
        for ev in stream:
            known = not isinstance(ev.event, any_pb2.Any)
            if not known and ev.type_url:
                print(f"pyctr: cannot decode an event of type {ev.type_url}", file=sys.stderr)
                continue
            line = format_event(
                ev.timestamp_ns, ev.namespace, ev.topic, ev.event if known else None
            )
            print(line, flush=True)
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "events",
        aliases=["event"],
        help="display events",
        description="display the daemon's events as they happen, until interrupted; "
        'filters (any of them matches) use containerd\'s syntax, e.g. topic=="/images/create"',
    )
    p.add_argument("filters", nargs="*", metavar="FILTER")
    p.set_defaults(func=_events)
