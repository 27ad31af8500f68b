"""Start-up cost of the SDK and of pyctr: what loads when, and the static tables that allow it.

The client spells some defaults and pyctr lists its commands without importing the modules
that own them; these tests hold those copies to their sources.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

import pytest

from pycontainerd.cli.main import COMMANDS, _parser, _selected


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())


def test_client_defaults_match_their_sources() -> None:
    from pycontainerd.client import client, containers
    from pycontainerd.images import pull
    from pycontainerd.snapshots import DEFAULT_SNAPSHOTTER

    assert client.DEFAULT_SNAPSHOTTER == DEFAULT_SNAPSHOTTER
    assert client.DEFAULT_RUNTIME == containers.DEFAULT_RUNTIME
    assert client.DEFAULT_MAX_CONCURRENT_DOWNLOADS == pull.DEFAULT_MAX_CONCURRENT_DOWNLOADS


def test_connection_headers_match_their_sources() -> None:
    from pycontainerd.client.connection import Connection
    from pycontainerd.leases import LEASE_HEADER
    from pycontainerd.namespaces import NAMESPACE_HEADER

    conn = Connection("/nowhere.sock")
    assert conn.metadata("ns", "l1") == ((NAMESPACE_HEADER, "ns"), (LEASE_HEADER, "l1"))
    assert conn.metadata(None, None) == ()


def test_making_a_client_loads_neither_grpc_nor_the_image_machinery() -> None:
    loaded = _modules_after(
        "import pycontainerd\nc = pycontainerd.Client('/nowhere.sock', namespace='x')"
    )
    assert "pycontainerd.client.client" in loaded
    heavy = {"grpc", "pycontainerd.client.images", "pycontainerd.unpack", "pycontainerd.remotes"}
    assert loaded & heavy == set()


def test_async_client_loads_lazily_too() -> None:
    loaded = _modules_after("import pycontainerd\nc = pycontainerd.AsyncClient('/nowhere.sock')")
    assert "pycontainerd.client.aio" in loaded
    assert loaded & {"grpc", "pycontainerd.client.images"} == set()


def test_pyctr_help_loads_no_command_module() -> None:
    loaded = _modules_after(
        "from pycontainerd.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    )
    assert not {
        m for m in loaded if m.startswith("pycontainerd.cli.") and m != "pycontainerd.cli.main"
    }
    assert "grpc" not in loaded


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.name)
def test_command_table_matches_the_modules_parsers(command: object) -> None:
    from pycontainerd.cli.main import Command

    assert isinstance(command, Command)
    sub = argparse.ArgumentParser().add_subparsers()
    importlib.import_module(f"pycontainerd.cli.{command.module}").add_parser(sub)
    names = list(sub.choices)
    assert names == [command.name, *command.aliases]
    helps = [a.help for a in sub._choices_actions]
    assert helps == [command.help]


def test_the_command_word_is_found_past_global_options() -> None:
    assert _selected([]) is None
    assert _selected(["--help"]) is None
    found = _selected(["-a", "/x.sock", "--namespace", "images", "--debug", "ns", "ls"])
    assert found is not None
    assert found.name == "namespaces"
    assert _selected(["--timeout=3", "i", "ls"]) == COMMANDS[3]
    assert _selected(["nosuch"]) is None


def test_a_selected_command_gets_its_full_parser() -> None:
    args = _parser(["-n", "x", "ns", "create", "a"]).parse_args(["-n", "x", "ns", "create", "a"])
    assert args.namespace == "x"
    assert callable(args.func)


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    from pycontainerd.cli.main import main

    with pytest.raises(SystemExit) as info:
        main(["nosuch"])
    assert info.value.code == 2
    assert "invalid choice: 'nosuch'" in capsys.readouterr().err
