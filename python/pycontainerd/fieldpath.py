"""Update masks as containerd's services apply them, and label validation.

An ``Update`` request carries the object and a ``FieldMask`` of paths. containerd applies it
like this, and so do we:

- no paths: replace the mutable fields (for labels, all of them);
- ``labels``: replace all labels;
- ``labels.KEY``: set ``KEY`` to its new value, or delete it when the new value is absent or
  empty (everything after ``labels.`` is the key, dots and quotes included, as containerd's
  ``strings.TrimPrefix``);
- any other path must be one the object allows, else :class:`InvalidArgument`.

An empty label value never persists: it means "no such label".
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import TypeVar

from pycontainerd.errdefs import InvalidArgument

__all__ = [
    "MAX_LABEL_SIZE",
    "apply_label_updates",
    "apply_map_updates",
    "check_paths",
    "split_path",
    "update_error",
    "validate_label",
    "validate_labels",
]

V = TypeVar("V")

#: The most bytes a label's key and value may hold together.
MAX_LABEL_SIZE = 4096


def validate_label(key: str, value: str) -> None:
    """Raise :class:`InvalidArgument` for a label over the size limit (``labels.Validate``)."""
    raw_key = key.encode("utf-8", "surrogatepass")
    if len(raw_key) + len(value.encode("utf-8", "surrogatepass")) > MAX_LABEL_SIZE:
        shown = raw_key[:10].decode("utf-8", "ignore")
        raise InvalidArgument(
            f"label key and value greater than maximum size ({MAX_LABEL_SIZE} bytes), key: {shown}"
        )


def validate_labels(labels: Mapping[str, str], *, prefix: str = "") -> None:
    """Validate every label; ``prefix`` (``image.Labels``) leads the message, as in containerd."""
    for key, value in labels.items():
        try:
            validate_label(key, value)
        except InvalidArgument as exc:
            if prefix:
                raise InvalidArgument(f"{prefix}: {exc.message}") from None
            raise


def split_path(path: str) -> tuple[str, str | None]:
    """Split an update path into its field and, for ``field.KEY``, the map key.

    ``labels`` → ``("labels", None)``; ``labels.a.b`` → ``("labels", "a.b")``.
    """
    field, dot, key = path.partition(".")
    return (field, key) if dot else (field, None)


def update_error(path: str, kind: str = "", name: str | None = None) -> InvalidArgument:
    """containerd's error for a path an object cannot update.

    ``cannot update "foo" field on image "x"``; without ``kind``, ``on "x"``; without ``name``,
    just ``cannot update "foo" field``.
    """
    msg = f"cannot update {_quote(path)} field"
    if name is not None:
        msg += f" on {kind} {_quote(name)}" if kind else f" on {_quote(name)}"
    return InvalidArgument(msg)


def check_paths(
    paths: Iterable[str],
    fields: Collection[str] = (),
    map_fields: Collection[str] = ("labels",),
    *,
    kind: str = "",
    name: str | None = None,
) -> None:
    """Refuse the first path that is neither in ``fields`` nor a map field or its ``field.KEY``."""
    for path in paths:
        if path in fields or path in map_fields:
            continue
        field, key = split_path(path)
        if key is not None and field in map_fields:
            continue
        raise update_error(path, kind, name)


def apply_map_updates(
    current: Mapping[str, V],
    new: Mapping[str, V],
    paths: Sequence[str],
    *,
    field: str = "labels",
) -> dict[str, V]:
    """Apply the paths that concern the map ``field``; other paths are left to the caller.

    No paths, or ``field`` itself, replaces the map with ``new``; ``field.KEY`` copies ``KEY``
    from ``new`` or deletes it when ``new`` has none.
    """
    if not paths:
        return dict(new)
    result = dict(current)
    prefix = field + "."
    for path in paths:
        if path == field:
            result = dict(new)
        elif path.startswith(prefix):
            key = path[len(prefix) :]
            if key in new:
                result[key] = new[key]
            else:
                result.pop(key, None)
    return result


def apply_label_updates(
    current: Mapping[str, str],
    new: Mapping[str, str],
    paths: Sequence[str],
    allowed_fields: Collection[str] = frozenset(),
    *,
    kind: str = "",
    name: str | None = None,
    map_fields: Collection[str] = ("labels",),
) -> dict[str, str]:
    """The labels after an update with ``paths``, checked and validated.

    ``allowed_fields`` are the other plain fields the object accepts (``target``, ``spec``) and
    ``map_fields`` the map fields whose ``field.KEY`` paths it accepts (``labels``, and say
    ``annotations``); the caller applies those. Any other path raises :class:`InvalidArgument`
    naming it, the object ``kind`` and ``name``. Empty values are dropped and every label is
    checked with :func:`validate_label`.
    """
    check_paths(paths, allowed_fields, {"labels", *map_fields}, kind=kind, name=name)
    updated = apply_map_updates(current, new, paths, field="labels")
    labels = {k: v for k, v in updated.items() if v}
    validate_labels(labels, prefix=f"{kind}.Labels" if kind else "")
    return labels


def _quote(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)
