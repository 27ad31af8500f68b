"""OCI content descriptors: what a blob is, how big, and its digest."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pycontainerd import errdefs
from pycontainerd.digest import validate_digest
from pycontainerd.platforms import Platform

__all__ = ["Descriptor"]


@dataclass(frozen=True)
class Descriptor:
    """An OCI descriptor, the fields containerd stores.

    ``urls`` (where a foreign layer may be fetched from) and ``platform`` (of a manifest in an
    index) come from manifests; containerd's API does not carry them.
    """

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    urls: tuple[str, ...] = ()
    platform: Platform | None = None

    def validate(self, what: str = "Target") -> None:
        """Refuse a descriptor without a valid digest, a positive size and a media type
        (:class:`~pycontainerd.errdefs.InvalidArgument`; ``what`` names it in the message)."""
        try:
            validate_digest(self.digest)
        except errdefs.InvalidArgument as exc:
            raise errdefs.InvalidArgument(f"{what}.Digest {self.digest!r} invalid: {exc}") from None
        if self.size <= 0:
            raise errdefs.InvalidArgument(f"{what}.Size must be greater than zero")
        if not self.media_type:
            raise errdefs.InvalidArgument(f"{what}.MediaType must be set")
