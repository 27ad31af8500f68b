"""Every public name of the client, and of the modules with a reference page, has a
docstring: the modules, and each class, function, method and property their ``__all__``
exports (the pages in docs/reference are made from them by scripts/gen-docs)."""

from __future__ import annotations

import enum
import importlib
import importlib.machinery
import importlib.util
import inspect
import pkgutil
from pathlib import Path
from typing import Any

import pytest

import pycontainerd.client


def client_modules() -> list[str]:
    """pycontainerd, every module of pycontainerd.client, cio and errdefs."""
    names = ["pycontainerd", "pycontainerd.client", "pycontainerd.cio", "pycontainerd.errdefs"]
    for info in pkgutil.iter_modules(pycontainerd.client.__path__, "pycontainerd.client."):
        names.append(info.name)
    return sorted(names)


def reference_modules() -> list[str]:
    """The modules scripts/gen-docs makes a page of."""
    path = Path(__file__).resolve().parents[2] / "scripts" / "gen-docs"
    loader = importlib.machinery.SourceFileLoader("gen_docs", str(path))
    spec = importlib.util.spec_from_loader("gen_docs", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return list(module.MODULES)


def undocumented(modname: str) -> list[str]:
    """The public names of ``modname`` without a docstring."""
    mod = importlib.import_module(modname)
    missing = [] if inspect.getdoc(mod) else [modname]
    for name in getattr(mod, "__all__", []):
        obj = getattr(mod, name)
        if not getattr(obj, "__module__", "").startswith("pycontainerd"):
            continue  # a constant, or a name from elsewhere
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and not (obj.__doc__ or "").strip():
            missing.append(f"{modname}.{name}")
        if inspect.isclass(obj) and not issubclass(obj, enum.Enum):
            missing += [f"{modname}.{name}.{m}" for m in _undocumented_members(obj)]
    return missing


def _undocumented_members(cls: type) -> list[str]:
    out = []
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        target: Any = value
        if isinstance(value, (staticmethod, classmethod)):
            target = value.__func__
        public = isinstance(value, property) or inspect.isfunction(target)
        # an override of a documented base method inherits its docstring
        if (
            public
            and not inspect.getdoc(getattr(cls, name))
            and not _documented_in_a_base(cls, name)
        ):
            out.append(name)
    return out


def _documented_in_a_base(cls: type, name: str) -> bool:
    return any(inspect.getdoc(getattr(base, name, None)) for base in cls.__mro__[1:])


def test_the_walk_finds_the_client_and_reference_modules() -> None:
    modules = client_modules()
    for expected in ["pycontainerd.client.client", "pycontainerd.client.tasks"]:
        assert expected in modules
    assert "pycontainerd.oci" in reference_modules()


@pytest.mark.parametrize("modname", sorted(set(client_modules()) | set(reference_modules())))
def test_public_names_have_docstrings(modname: str) -> None:
    assert undocumented(modname) == []


def test_an_undocumented_name_is_found() -> None:
    import types

    mod = types.ModuleType("pycontainerd.fake", "A module.")

    class Documented:
        """A class."""

        def method(self) -> None:
            pass

        @property
        def prop(self) -> int:
            return 1

    def function() -> None:
        pass

    Documented.__module__ = function.__module__ = "pycontainerd.fake"
    mod.__dict__.update(Documented=Documented, function=function)
    mod.__all__ = ["Documented", "function"]  # type: ignore[attr-defined]
    import sys

    sys.modules["pycontainerd.fake"] = mod
    try:
        assert sorted(undocumented("pycontainerd.fake")) == [
            "pycontainerd.fake.Documented.method",
            "pycontainerd.fake.Documented.prop",
            "pycontainerd.fake.function",
        ]
    finally:
        del sys.modules["pycontainerd.fake"]
