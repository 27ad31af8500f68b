"""Update masks and label validation, as containerd's metadata stores apply them."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import pytest

from pycontainerd.errdefs import InvalidArgument
from pycontainerd.fieldpath import (
    MAX_LABEL_SIZE,
    apply_label_updates,
    apply_map_updates,
    check_paths,
    split_path,
    update_error,
    validate_label,
    validate_labels,
)

CURRENT = {"a": "1", "b": "2", "x.y": "3"}
NEW = {"a": "10", "c": "30", "x.y": "", "d": ""}


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        # no paths: replace every label; empty values do not persist
        ([], {"a": "10", "c": "30"}),
        (["labels"], {"a": "10", "c": "30"}),
        (["labels.a"], {"a": "10", "b": "2", "x.y": "3"}),
        (["labels.c"], {"a": "1", "b": "2", "x.y": "3", "c": "30"}),
        # absent from the new labels: deleted
        (["labels.b"], {"a": "1", "x.y": "3"}),
        # empty in the new labels: deleted
        (["labels.x.y"], {"a": "1", "b": "2"}),
        (["labels.d"], CURRENT),
        (["labels.nothing"], CURRENT),
        (["labels.a", "labels.b", "labels.c"], {"a": "10", "x.y": "3", "c": "30"}),
        # later paths apply over earlier ones
        (["labels", "labels.b"], {"a": "10", "c": "30"}),
        (["labels.b", "labels"], {"a": "10", "c": "30"}),
        # other allowed fields are left to the caller
        (["target"], CURRENT),
        (["target", "labels.a"], {"a": "10", "b": "2", "x.y": "3"}),
        (["annotations.k"], CURRENT),
    ],
)
def test_apply_label_updates(paths: list[str], expected: dict[str, str]) -> None:
    got = apply_label_updates(
        CURRENT, NEW, paths, {"target"}, kind="image", name="img", map_fields={"annotations"}
    )
    assert got == expected
    assert CURRENT == {"a": "1", "b": "2", "x.y": "3"}  # not modified in place


def test_key_is_everything_after_the_prefix() -> None:
    # containerd trims the "labels." prefix; dots and quotes stay in the key
    assert apply_label_updates({}, {'"a.b"': "q", "a.b": "u"}, ['labels."a.b"']) == {'"a.b"': "q"}
    assert apply_label_updates({}, {"a.b": "u"}, ["labels.a.b"]) == {"a.b": "u"}
    assert apply_label_updates({"": "x"}, {}, ["labels."]) == {}


@pytest.mark.parametrize(
    ("paths", "allowed", "kind", "name", "message"),
    [
        (["foo"], set(), "namespace", "x", 'cannot update "foo" field on namespace "x"'),
        (
            ["labels.a", "spec"],
            set(),
            "image",
            "docker.io/a:b",
            'cannot update "spec" field on image "docker.io/a:b"',
        ),
        (
            ["target.digest"],
            {"target"},
            "image",
            "i",
            'cannot update "target.digest" field on image "i"',
        ),
        (["annotations.k"], set(), "", "c1", 'cannot update "annotations.k" field on "c1"'),
        (["label"], set(), "", None, 'cannot update "label" field'),
        ([""], set(), "snapshot", "k", 'cannot update "" field on snapshot "k"'),
        (
            ["Labels.a"],
            set(),
            "content info",
            "sha256:abc",
            'cannot update "Labels.a" field on content info "sha256:abc"',
        ),
    ],
)
def test_unknown_path(
    paths: list[str], allowed: set[str], kind: str, name: str | None, message: str
) -> None:
    with pytest.raises(InvalidArgument) as info:
        apply_label_updates(CURRENT, NEW, paths, allowed, kind=kind, name=name)
    assert str(info.value) == message


def test_first_unknown_path_is_named() -> None:
    with pytest.raises(InvalidArgument, match='"one"'):
        check_paths(["labels.a", "one", "two"], kind="lease", name="l")


@pytest.mark.parametrize(
    ("paths", "fields", "map_fields"),
    [
        ([], (), ("labels",)),
        (["labels", "labels.x", "labels.x.y"], (), ("labels",)),
        (
            ["spec", "image", "snapshotkey", "extensions.a", "extensions"],
            ("spec", "image", "snapshotkey"),
            ("labels", "extensions"),
        ),
    ],
)
def test_check_paths_accepts(
    paths: Sequence[str], fields: Collection[str], map_fields: Collection[str]
) -> None:
    check_paths(paths, fields, map_fields)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("labels", ("labels", None)),
        ("labels.foo", ("labels", "foo")),
        ("labels.a.b", ("labels", "a.b")),
        ('labels."a.b"', ("labels", '"a.b"')),
        ("labels.", ("labels", "")),
        ("", ("", None)),
    ],
)
def test_split_path(path: str, expected: tuple[str, str | None]) -> None:
    assert split_path(path) == expected


@pytest.mark.parametrize(
    ("current", "new", "paths", "expected"),
    [
        ({"a": 1}, {"b": 2}, [], {"b": 2}),
        ({"a": 1}, {"b": 2}, ["extensions"], {"b": 2}),
        ({"a": 1}, {"b": 2}, ["extensions.b"], {"a": 1, "b": 2}),
        ({"a": 1}, {"b": 2}, ["extensions.a"], {}),
        ({"a": 1}, {"b": 2}, ["labels.b", "spec"], {"a": 1}),
    ],
)
def test_apply_map_updates(
    current: Mapping[str, int], new: Mapping[str, int], paths: list[str], expected: dict[str, int]
) -> None:
    assert apply_map_updates(current, new, paths, field="extensions") == expected


def test_update_error_is_invalid_argument() -> None:
    err = update_error("x", "namespace", "default")
    assert isinstance(err, InvalidArgument)
    assert str(err) == 'cannot update "x" field on namespace "default"'


# --- labels.Validate ---


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("some", "value"),
        ("s", "s" * (MAX_LABEL_SIZE - 1)),
        ("k" * MAX_LABEL_SIZE, ""),
        ("", ""),
    ],
)
def test_valid_labels(key: str, value: str) -> None:
    validate_label(key, value)
    validate_labels({key: value})


@pytest.mark.parametrize(
    ("key", "value", "shown"),
    [
        ("s" * MAX_LABEL_SIZE, "s", "ssssssssss"),
        ("short", "v" * MAX_LABEL_SIZE, "short"),
        ("é" * 2048, "x", "ééééé"),  # sizes count bytes; the key is cut to 10 bytes
        ("aéééééé", "x" * 4090, "aéééé"),  # a cut through a character drops it
    ],
)
def test_invalid_labels(key: str, value: str, shown: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_label(key, value)
    assert str(info.value) == (
        f"label key and value greater than maximum size (4096 bytes), key: {shown}"
    )


def test_validate_labels_prefix() -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_labels({"ok": "1", "big": "x" * 5000}, prefix="image.Labels")
    assert str(info.value) == (
        "image.Labels: label key and value greater than maximum size (4096 bytes), key: big"
    )


def test_apply_label_updates_validates() -> None:
    with pytest.raises(InvalidArgument) as info:
        apply_label_updates({}, {"big": "x" * 5000}, ["labels.big"], kind="namespace", name="n")
    assert str(info.value).startswith("namespace.Labels: label key and value greater")
    with pytest.raises(InvalidArgument, match=r"^label key"):
        apply_label_updates({}, {"big": "x" * 5000}, [])
