"""Plugin registrations: requirement order, failures kept as data, lookups."""

from __future__ import annotations

from pathlib import Path

import pytest

from pycontainerd import errdefs
from pycontainerd.plugin import InitContext, Registration, SkipPlugin, Type, load, order


def _reg(
    type_: str, id_: str, requires: tuple[str, ...] = (), fail: Exception | None = None
) -> Registration:
    def init(ic: InitContext) -> object:
        if fail is not None:
            raise fail
        return f"{type_}.{id_}"

    return Registration(type=type_, id=id_, init=init, requires=requires)


def test_order_puts_requirements_first() -> None:
    grpc = _reg(Type.GRPC, "namespaces", (Type.METADATA,))
    meta = _reg(Type.METADATA, "sqlite", (Type.CONTENT,))
    content = _reg(Type.CONTENT, "content")
    ordered = [r.uri for r in order([grpc, meta, content])]
    assert (
        ordered.index("io.containerd.content.v1.content")
        < ordered.index("io.containerd.metadata.v1.sqlite")
        < ordered.index("io.containerd.grpc.v1.namespaces")
    )


def test_circular_requirement_is_refused() -> None:
    a = _reg("t.a", "a", ("t.b",))
    b = _reg("t.b", "b", ("t.a",))
    with pytest.raises(errdefs.FailedPrecondition, match="circular"):
        order([a, b])


def test_failures_are_kept_and_dependents_fail(tmp_path: Path) -> None:
    def needs_meta(ic: InitContext) -> object:
        return ic.get(Type.METADATA)

    regs = [
        _reg(Type.METADATA, "sqlite", fail=OSError("disk on fire")),
        Registration(type=Type.GRPC, id="ns", init=needs_meta, requires=(Type.METADATA,)),
        _reg(Type.SNAPSHOT, "zfs", fail=SkipPlugin("no zfs here")),
        _reg(Type.GRPC, "version"),
    ]
    plugins = load(regs, root=tmp_path, state=tmp_path, address="x", configs={})
    by_id = {p.registration.id: p for p in plugins.all()}
    assert str(by_id["sqlite"].error) == "disk on fire"
    assert (
        "plugin io.containerd.metadata.v1 failed: io.containerd.metadata.v1.sqlite: disk on fire"
        in str(by_id["ns"].error)
    )
    assert str(by_id["zfs"].error) == "skip plugin: no zfs here"
    assert by_id["version"].ok
    assert plugins.instances(Type.GRPC) == {"version": "io.containerd.grpc.v1.version"}


def test_disabled_plugins_are_not_loaded(tmp_path: Path) -> None:
    regs = [_reg(Type.GRPC, "a"), _reg(Type.GRPC, "b")]
    plugins = load(
        regs,
        root=tmp_path,
        state=tmp_path,
        address="x",
        configs={},
        disabled=["io.containerd.grpc.v1.b"],
    )
    assert [p.registration.id for p in plugins.all()] == ["a"]


def test_missing_type_is_not_found(tmp_path: Path) -> None:
    plugins = load([], root=tmp_path, state=tmp_path, address="x", configs={})
    with pytest.raises(
        errdefs.NotFound, match="no plugins registered for io.containerd.content.v1"
    ):
        plugins.get(Type.CONTENT)


def test_each_plugin_gets_its_own_root(tmp_path: Path) -> None:
    seen: list[Path] = []

    def init(ic: InitContext) -> object:
        seen.append(ic.root)
        return None

    load(
        [Registration(type=Type.GRPC, id="x", init=init)],
        root=tmp_path,
        state=tmp_path,
        address="x",
        configs={},
    )
    assert seen == [tmp_path / "io.containerd.grpc.v1.x"]
