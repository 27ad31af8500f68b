"""The daemon config: rendering, loading back, and errors that name file, line and key."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from pycontainerd.daemon import config as cfg
from pycontainerd.daemon.builtins import REGISTRATIONS
from pycontainerd.plugin import Registration, Type


@dataclass
class _GCConfig:
    pause_threshold: float = 0.02
    deletion_threshold: int = 0
    schedule_delay: str = "0ms"
    exclude: list[str] = field(default_factory=list)
    verbose: bool = False


_GC = Registration(type=Type.GC, id="scheduler", init=lambda ic: None, config=_GCConfig)


def test_default_round_trips() -> None:
    regs = [*REGISTRATIONS, _GC]
    text = cfg.render(cfg.defaults(regs))
    assert text.startswith("version = 2\n")
    loaded = cfg.loads(text, regs)
    assert loaded == cfg.defaults(regs)
    assert cfg.render(loaded) == text


def test_plugin_sections_are_decoded_and_rendered() -> None:
    text = (
        "version = 2\n"
        '[plugins."io.containerd.gc.v1.scheduler"]\n'
        "  pause_threshold = 0.5\n"
        '  exclude = ["a", "b"]\n'
        "  verbose = true\n"
    )
    loaded = cfg.loads(text, [_GC])
    plugin = loaded.plugins["io.containerd.gc.v1.scheduler"]
    assert plugin == _GCConfig(pause_threshold=0.5, exclude=["a", "b"], verbose=True)
    again = cfg.loads(cfg.render(loaded), [_GC])
    assert again.plugins == loaded.plugins


def test_containerd_settings_we_do_not_use_are_accepted() -> None:
    text = 'version = 2\noom_score = -999\n[ttrpc]\n  address = ""\n[metrics]\n  address = ""\n'
    assert cfg.loads(text, REGISTRATIONS).root == cfg.DEFAULT_ROOT


def test_settings_of_unknown_plugins_are_ignored_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    text = 'version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "x"\n'
    cfg.loads(text, REGISTRATIONS, path="/etc/x.toml")
    assert "ignoring settings of plugin io.containerd.grpc.v1.cri" in caplog.text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version = 2\n[grpc\n", "config f.toml:2: key [grpc: "),
        ('version = 2\nroot = "a"\nroot = "b"\n', "config f.toml:3: key root: "),
        (
            'version = 2\n[grpc]\n  uid = "zero"\n',
            "config f.toml:3: key grpc.uid: expected an integer, got a string",
        ),
        (
            "version = 2\n[grpc]\n  max_recv_message_size = true\n",
            "key grpc.max_recv_message_size: expected an integer, got a boolean",
        ),
        ('version = 2\ngrpc = "x"\n', "config f.toml:2: key grpc: expected a table, got a string"),
        ('version = 2\n[grpc]\n  adress = "/x"\n', "config f.toml:3: key grpc.adress: unknown key"),
        (
            'version = 2\n[plugins."io.containerd.gc.v1.scheduler"]\n  pause_threshold = "x"\n',
            'scheduler".pause_threshold: expected a float',
        ),
    ],
)
def test_errors_name_file_line_and_key(text: str, message: str) -> None:
    with pytest.raises(cfg.ConfigError) as info:
        cfg.loads(text, [*REGISTRATIONS, _GC], path="f.toml")
    assert message in str(info.value)


def test_strings_are_escaped_when_rendered() -> None:
    config = cfg.defaults([])
    config.root = '/tmp/we"ird\\path'
    assert cfg.loads(cfg.render(config), []).root == config.root
