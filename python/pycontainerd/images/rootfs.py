"""An image's root file system as a snapshot chain: OCI chain IDs from layer diff IDs.

The image spec's ``identity.ChainID``: the first layer's chain ID is its diff ID; each next one
is ``sha256(parent_chain_id + " " + diff_id)``. A snapshotter keeps an image's unpacked layers
under their chain IDs, so the top one is the parent of a container's snapshot.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = ["chain_id", "chain_ids"]


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """The chain ID of every prefix of ``diff_ids``, bottom layer first."""
    out: list[str] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            joined = f"{out[-1]} {diff_id}".encode()
            out.append("sha256:" + hashlib.sha256(joined).hexdigest())
    return out


def chain_id(diff_ids: Sequence[str]) -> str:
    """The chain ID of the whole stack (``""`` for no layers)."""
    ids = chain_ids(diff_ids)
    return ids[-1] if ids else ""
