"""Namespaces as values, and how a call carries one (containerd's ``namespaces`` package)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = ["DEFAULT", "NAMESPACE_HEADER", "Namespace"]

#: The namespace clients use when none is given.
DEFAULT: Final = "default"
#: gRPC metadata key carrying the namespace of a call.
NAMESPACE_HEADER: Final = "containerd-namespace"


@dataclass(frozen=True)
class Namespace:
    """A namespace and its labels."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
