"""Filter adaptors for content records: the fields containerd's filters can name."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pycontainerd import filters

if TYPE_CHECKING:
    from pycontainerd.content import Info, Status

__all__ = ["adapt_info", "adapt_status"]


def adapt_info(info: Info) -> filters.Adaptor:
    """``digest`` and ``labels.KEY``, as containerd's ``content.AdaptInfo`` (no ``size``)."""

    def field(path: Sequence[str]) -> tuple[str, bool]:
        if not path:
            return "", False
        head = path[0]
        if head == "digest":
            return info.digest, True
        if head == "labels":
            return filters.check_map(path[1:], info.labels)
        return "", False

    return filters.AdaptorFunc(field)


def adapt_status(status: Status) -> filters.Adaptor:
    """``ref``, as containerd's status adaptor."""

    def field(path: Sequence[str]) -> tuple[str, bool]:
        if path and path[0] == "ref":
            return status.ref, True
        return "", False

    return filters.AdaptorFunc(field)
