"""Typed stub of ``pycontainerd._native``, the Rust extension module (crate ``rust/pcd-py``).

Every function releases the GIL for its whole call and raises ``pycontainerd.errdefs`` classes.
"""

__all__ = ["__version__", "build_info"]
__version__: str

def build_info() -> tuple[str, str]:
    """Return ``(version, revision)`` embedded when the module was built.

    ``revision`` is the git commit of the checkout (``unknown`` outside one, with ``.m``
    appended when the tree had uncommitted changes).
    """
