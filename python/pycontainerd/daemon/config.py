"""The daemon's TOML config: containerd's version-2 layout where a setting exists in both.

``render`` prints a config (``pycontainerd config default``), ``load`` reads one back. A file
that does not parse, an unknown key or a value of the wrong type stops the daemon with an error
naming the file, the line and the key.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pycontainerd import errdefs
from pycontainerd.plugin import Registration

__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_ROOT",
    "DEFAULT_STATE",
    "LOG_LEVELS",
    "Config",
    "ConfigError",
    "DebugConfig",
    "GRPCConfig",
    "load",
    "render",
]

DEFAULT_ROOT: Final = "/var/lib/pycontainerd"
DEFAULT_STATE: Final = "/run/pycontainerd"
DEFAULT_ADDRESS: Final = "/run/pycontainerd/pycontainerd.sock"
DEFAULT_CONFIG_PATH: Final = "/etc/pycontainerd/config.toml"
LOG_LEVELS: Final = ("trace", "debug", "info", "warn", "warning", "error", "fatal", "panic")

# containerd settings this daemon accepts in a config file but does not act on.
_IGNORED_TOP_LEVEL: Final = frozenset(
    {
        "imports",
        "oom_score",
        "plugin_dir",
        "temp",
        "ttrpc",
        "metrics",
        "cgroup",
        "timeouts",
        "stream_processors",
        "proxy_plugins",
    }
)


log = logging.getLogger(__name__)


class ConfigError(errdefs.InvalidArgument):
    """A config file that cannot be used, naming the file, the line and the key."""


@dataclass
class GRPCConfig:
    """``[grpc]``: where and how the API is served."""

    address: str = DEFAULT_ADDRESS
    uid: int = 0
    gid: int = 0
    max_recv_message_size: int = 16 << 20
    max_send_message_size: int = 16 << 20


@dataclass
class DebugConfig:
    """``[debug]``: logging."""

    level: str = "info"
    format: str = "text"


@dataclass
class Config:
    """The whole daemon config."""

    version: int = 2
    root: str = DEFAULT_ROOT
    state: str = DEFAULT_STATE
    disabled_plugins: list[str] = field(default_factory=list)
    required_plugins: list[str] = field(default_factory=list)
    grpc: GRPCConfig = field(default_factory=GRPCConfig)
    debug: DebugConfig = field(default_factory=DebugConfig)
    #: Decoded settings of each plugin that has a config class, by plugin URI.
    plugins: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Loading


def _line_of(text: str, dotted: str) -> int | None:
    """The line where the last component of ``dotted`` is set, best effort."""
    parts = dotted.split(".") if not dotted.startswith("plugins.") else [dotted]
    leaf = parts[-1].rsplit(".", 1)[-1].strip('"')
    pattern = re.compile(rf'^\s*"?{re.escape(leaf)}"?\s*=')
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.match(line):
            return number
    return None


class _Decoder:
    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.text = text

    def error(self, key: str, problem: str) -> ConfigError:
        line = _line_of(self.text, key)
        where = f"{self.path}:{line}" if line else self.path
        return ConfigError(f"config {where}: key {key}: {problem}")

    def decode(self, cls: type[Any], data: Mapping[str, Any], prefix: str) -> Any:
        """Build dataclass ``cls`` from ``data``, checking keys and value types."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in data.items():
            full = f"{prefix}{key}"
            f = fields.get(key)
            if f is None:
                raise self.error(full, "unknown key")
            default = getattr(cls(), key)
            if dataclasses.is_dataclass(default):
                if not isinstance(value, dict):
                    raise self.error(full, f"expected a table, got {_kind(value)}")
                values[key] = self.decode(type(default), value, f"{full}.")
            else:
                values[key] = self.check(full, value, default)
        return cls(**values)

    def check(self, key: str, value: Any, default: Any) -> Any:
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        elif isinstance(default, str):
            ok = isinstance(value, str)
        elif isinstance(default, list):
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        elif isinstance(default, dict):
            ok = isinstance(value, dict)
        else:
            ok = True
        if not ok:
            want = _kind(default) if not isinstance(default, list) else "an array of strings"
            raise self.error(key, f"expected {want}, got {_kind(value)}")
        return value


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")


def load(path: str | Path, registrations: Iterable[Registration]) -> Config:
    """Read ``path``; a missing file gives the defaults only when ``path`` is the default one."""
    path = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        if path == DEFAULT_CONFIG_PATH:
            return defaults(registrations)
        raise ConfigError(f"config {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config {path}: {exc}") from exc
    return loads(text, registrations, path=path)


def loads(text: str, registrations: Iterable[Registration], *, path: str = "<string>") -> Config:
    """Parse config text; ``path`` names it in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(path, text, exc) from None
    dec = _Decoder(path, text)
    version = data.get("version", 1)
    if version != 2:
        raise dec.error("version", f"unsupported config version {version!r}, use version = 2")
    plugin_data = data.pop("plugins", {})
    if not isinstance(plugin_data, dict):
        raise dec.error("plugins", f"expected a table, got {_kind(plugin_data)}")
    for key in _IGNORED_TOP_LEVEL & data.keys():
        data.pop(key)
    config: Config = dec.decode(Config, data, "")
    if config.debug.level not in LOG_LEVELS:
        raise dec.error("debug.level", f"unknown log level {config.debug.level!r}")
    regs = {r.uri: r for r in registrations}
    for uri, reg in regs.items():
        if reg.config is None:
            continue
        raw = plugin_data.get(uri, {})
        if not isinstance(raw, dict):
            raise dec.error(f'plugins."{uri}"', f"expected a table, got {_kind(raw)}")
        config.plugins[uri] = dec.decode(reg.config, raw, f'plugins."{uri}".')
    for uri in sorted(set(plugin_data) - regs.keys()):
        log.warning(
            "config %s: ignoring settings of plugin %s, which this daemon does not have", path, uri
        )
    return config


def _syntax_error(path: str, text: str, exc: tomllib.TOMLDecodeError) -> ConfigError:
    message = str(exc)
    match = _TOML_POSITION.search(message)
    if not match:
        return ConfigError(f"config {path}: {message}")
    line_no = int(match.group(1))
    problem = _TOML_POSITION.sub("", message).strip().lower()
    lines = text.splitlines()
    line = lines[line_no - 1] if 0 < line_no <= len(lines) else ""
    key = line.split("=", 1)[0].strip() if "=" in line else line.strip()
    return ConfigError(f"config {path}:{line_no}: key {key or '?'}: {problem}")


def defaults(registrations: Iterable[Registration]) -> Config:
    config = Config()
    for reg in registrations:
        if reg.config is not None:
            config.plugins[reg.uri] = reg.config()
    return config


# ---------------------------------------------------------------------------------------------
# Rendering

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _string(key)


def _string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    escaped = escaped.replace("\t", "\\t")
    return f'"{escaped}"'


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot render {type(value).__name__} as toml")


def _table(name: str, obj: Any, out: list[str], indent: str) -> None:
    scalars: list[tuple[str, Any]] = []
    tables: list[tuple[str, Any]] = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        (tables if dataclasses.is_dataclass(value) else scalars).append((f.name, value))
    if name:
        out.append(f"\n{indent}[{name}]")
    for key, value in scalars:
        out.append(
            f"{indent}  {_key(key)} = {_value(value)}" if name else f"{key} = {_value(value)}"
        )
    for key, value in tables:
        _table(
            f"{name}.{_key(key)}" if name else _key(key), value, out, indent + "  " if name else ""
        )


def render(config: Config) -> str:
    """The config as TOML that :func:`loads` reads back to an equal ``Config``."""
    out: list[str] = []
    for f in dataclasses.fields(config):
        if f.name == "plugins":
            continue
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            _table(f.name, value, out, "")
        else:
            out.append(f"{f.name} = {_value(value)}")
    if config.plugins:
        out.append("\n[plugins]")
        for uri in sorted(config.plugins):
            _table(f"plugins.{_string(uri)}", config.plugins[uri], out, "  ")
    return "\n".join(out) + "\n"
