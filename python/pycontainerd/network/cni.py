"""CNI, the Container Network Interface, as a runtime drives it (libcni's job, per the spec).

A network is a configuration list (a ``.conflist`` file, CNI 1.0.0 or 0.4.0): a name, a
``cniVersion`` and plugins run in order. :class:`CNI` finds each plugin's executable in the
configured directories and runs it with the spec's environment (``CNI_COMMAND``,
``CNI_CONTAINERID``, ``CNI_NETNS``, ``CNI_IFNAME``, ``CNI_PATH``) and its network config on
stdin: ADD in order, each plugin given the previous result (``prevResult``); DEL in reverse
order with the cached result of the ADD; CHECK in order with it. A plugin that declares a
capability (``"capabilities": {"portMappings": true}``) gets the runtime's value for it in
``runtimeConfig``. A plugin's JSON error (``code``, ``msg``, ``details``) becomes the
:mod:`pycontainerd.errdefs` class that fits it.

The result of each ADD is cached (as libcni does) under the cache directory, with the config it
was made with, so that DEL works after a restart, after the conflist changed, or after it is gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pycontainerd import errdefs

__all__ = [
    "CNI",
    "LOOPBACK",
    "SUPPORTED_VERSIONS",
    "CachedAttachment",
    "ConfList",
    "load_conflist",
    "parse_conflist",
]

#: The versions of the spec whose conflists this runtime runs.
SUPPORTED_VERSIONS: Final = ("0.3.0", "0.3.1", "0.4.0", "1.0.0")

#: CNI's well-known error codes (the spec's table), by number.
_CODE_NAMES: Final = {
    1: "incompatible cni version",
    2: "unsupported field in network configuration",
    3: "container unknown or does not exist",
    4: "invalid necessary environment variables",
    5: "i/o failure",
    6: "failed to decode content",
    7: "invalid network config",
    11: "try again later",
}

#: How long one plugin may run.
PLUGIN_TIMEOUT: Final = 60.0


@dataclass(frozen=True)
class ConfList:
    """A parsed network configuration list."""

    name: str
    cni_version: str
    plugins: tuple[Mapping[str, Any], ...]
    #: The whole document, as parsed.
    raw: Mapping[str, Any]
    #: The file it came from ("" when built in memory).
    path: str = ""

    def to_json(self) -> str:
        """The document as JSON (what is written to a conflist file)."""
        return json.dumps(self.raw, indent=2) + "\n"


#: The loopback network every container gets first: ``lo`` up in its namespace.
LOOPBACK: Final = ConfList(
    name="cni-loopback",
    cni_version="1.0.0",
    plugins=({"type": "loopback"},),
    raw={"cniVersion": "1.0.0", "name": "cni-loopback", "plugins": [{"type": "loopback"}]},
)


def parse_conflist(data: bytes | str, *, path: str = "<memory>") -> ConfList:
    """Parse a conflist document (or a single-plugin ``.conf``); InvalidArgument naming
    ``path`` and the problem."""

    def bad(problem: str) -> errdefs.InvalidArgument:
        return errdefs.InvalidArgument(f"network config {path}: {problem}")

    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad(f"not valid json: {exc}") from None
    if not isinstance(doc, dict):
        raise bad("expected a json object")
    if "plugins" not in doc and "type" in doc:  # a single plugin's .conf
        plugin = {k: v for k, v in doc.items() if k not in ("name", "cniVersion")}
        doc = {
            "cniVersion": doc.get("cniVersion", ""),
            "name": doc.get("name"),
            "plugins": [plugin],
        }
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise bad('"name" must be a non-empty string')
    version = doc.get("cniVersion")
    if not isinstance(version, str) or not version:
        raise bad('"cniVersion" must be a non-empty string')
    if version not in SUPPORTED_VERSIONS:
        raise bad(
            f"cniVersion {version} is not supported (supported: {', '.join(SUPPORTED_VERSIONS)})"
        )
    plugins = doc.get("plugins")
    if not isinstance(plugins, list) or not plugins:
        raise bad('"plugins" must be a non-empty array')
    for i, plugin in enumerate(plugins):
        if not isinstance(plugin, dict):
            raise bad(f"plugins[{i}]: expected a json object")
        if not isinstance(plugin.get("type"), str) or not plugin["type"]:
            raise bad(f'plugins[{i}]: "type" must be a non-empty string')
        if "/" in plugin["type"] or plugin["type"] in (".", ".."):
            raise bad(f'plugins[{i}]: "type" {plugin["type"]!r} is not a plugin name')
    return ConfList(name=name, cni_version=version, plugins=tuple(plugins), raw=doc, path=path)


def load_conflist(path: str | Path) -> ConfList:
    """Read and parse the conflist file ``path``."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise errdefs.NotFound(f"network config {path}: not found") from None
    except OSError as exc:
        raise errdefs.Unknown(f"network config {path}: {exc.strerror}") from None
    return parse_conflist(data, path=str(path))


@dataclass(frozen=True)
class CachedAttachment:
    """What the cache holds for one attachment: enough to run DEL and CHECK later."""

    container_id: str
    netns: str
    ifname: str
    conflist: ConfList
    capability_args: Mapping[str, Any] = field(default_factory=dict)
    result: Mapping[str, Any] | None = None


def _plugin_error(
    plugin: str, command: str, network: str, stdout: bytes, stderr: bytes, rc: int
) -> errdefs.ContainerdError:
    what = f"cni plugin {plugin} failed ({command} of network {network})"
    code: int | None = None
    msg = ""
    details = ""
    try:
        doc = json.loads(stdout) if stdout.strip() else None
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        raw_code = doc.get("code")
        code = raw_code if isinstance(raw_code, int) else None
        msg = str(doc.get("msg", ""))
        details = str(doc.get("details", ""))
    if not msg:
        msg = (stderr or stdout).decode(errors="replace").strip() or f"exit status {rc}"
    text = f"{what}: {msg}"
    if details and details not in msg:
        text += f": {details}"
    if code in _CODE_NAMES and code not in (7,):
        text += f" (code {code}: {_CODE_NAMES[code]})"
    lowered = msg.lower()
    if code in (1, 2, 6, 7):
        return errdefs.InvalidArgument(text)
    if "no ip addresses available" in lowered or "no available ip" in lowered:
        return errdefs.Unavailable(f"{text} (the network's subnet is exhausted)")
    if "requested ip address" in lowered and "already allocated" in lowered:
        return errdefs.AlreadyExists(text)
    if code == 11:
        return errdefs.Unavailable(text)
    if code == 3:
        return errdefs.NotFound(text)
    return errdefs.Unknown(text)


class CNI:
    """Runs conflists' plugins found in ``bin_dirs``, caching results under ``cache_dir``."""

    def __init__(self, bin_dirs: Sequence[str], cache_dir: Path) -> None:
        self.bin_dirs = tuple(bin_dirs)
        self.cache_dir = cache_dir

    # -- plugins

    def find_plugin(self, name: str) -> str:
        """The executable of plugin ``name``; NotFound naming it and the directories."""
        for d in self.bin_dirs:
            candidate = os.path.join(d, name)
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
        dirs = ", ".join(self.bin_dirs) or "(none configured)"
        raise errdefs.NotFound(f"cni plugin {name} not found in {dirs}")

    def _exec(
        self,
        command: str,
        conflist: ConfList,
        plugin: Mapping[str, Any],
        *,
        container_id: str,
        netns: str,
        ifname: str,
        prev_result: Mapping[str, Any] | None,
        capability_args: Mapping[str, Any],
    ) -> dict[str, Any] | None:
        type_ = str(plugin["type"])
        binary = self.find_plugin(type_)
        config: dict[str, Any] = dict(plugin)
        config["name"] = conflist.name
        config["cniVersion"] = conflist.cni_version
        if prev_result is not None:
            config["prevResult"] = prev_result
        caps = plugin.get("capabilities")
        if isinstance(caps, dict):
            runtime = {k: v for k, v in capability_args.items() if caps.get(k)}
            if runtime:
                config["runtimeConfig"] = runtime
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": netns,
            "CNI_IFNAME": ifname,
            "CNI_PATH": os.pathsep.join(self.bin_dirs),
        }
        try:
            proc = subprocess.run(
                [binary],
                input=json.dumps(config).encode(),
                env=env,
                capture_output=True,
                timeout=PLUGIN_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise errdefs.DeadlineExceeded(
                f"cni plugin {type_} ({command} of network {conflist.name}): "
                f"no answer within {PLUGIN_TIMEOUT:.0f}s"
            ) from None
        except OSError as exc:
            raise errdefs.Unknown(f"cni plugin {type_}: run {binary}: {exc.strerror}") from None
        if proc.returncode != 0:
            raise _plugin_error(
                type_, command, conflist.name, proc.stdout, proc.stderr, proc.returncode
            )
        if command != "ADD":
            return None
        try:
            result = json.loads(proc.stdout)
        except ValueError:
            raise errdefs.Unknown(
                f"cni plugin {type_} (ADD of network {conflist.name}): result is not json"
            ) from None
        if not isinstance(result, dict):
            raise errdefs.Unknown(
                f"cni plugin {type_} (ADD of network {conflist.name}): result is not an object"
            )
        return result

    # -- commands

    def add(
        self,
        conflist: ConfList,
        *,
        container_id: str,
        netns: str,
        ifname: str = "eth0",
        capability_args: Mapping[str, Any] | None = None,
        cache: bool = True,
    ) -> dict[str, Any]:
        """ADD: every plugin in order; the last result is cached and returned.

        A failure leaves what earlier plugins made: the caller runs :meth:`delete` (which
        works from the cache entry written before the first plugin runs). ``cache=False``
        is for what needs no DEL (``lo`` in a namespace that is removed after).
        """
        caps = dict(capability_args or {})
        attachment = CachedAttachment(container_id, netns, ifname, conflist, caps, None)
        if cache:
            self._write_cache(attachment)
        result: dict[str, Any] | None = None
        for plugin in conflist.plugins:
            result = self._exec(
                "ADD",
                conflist,
                plugin,
                container_id=container_id,
                netns=netns,
                ifname=ifname,
                prev_result=result,
                capability_args=caps,
            )
            if cache:
                self._write_cache(
                    CachedAttachment(container_id, netns, ifname, conflist, caps, result)
                )
        assert result is not None
        return result

    def delete(
        self,
        network: str,
        *,
        container_id: str,
        ifname: str = "eth0",
        netns: str | None = None,
        force: bool = False,
    ) -> None:
        """DEL with the cached config and result, plugins in reverse order; idempotent (no
        cache entry: nothing to do). The cache entry goes once every plugin succeeded, or in
        any case with ``force`` (undoing a failed ADD: what a plugin refuses to delete with
        the config it refused to add with, it did not make); the first error is raised."""
        cached = self.cached(network, container_id, ifname)
        if cached is None:
            return
        ns_path = cached.netns if netns is None else netns
        if ns_path and not os.path.exists(ns_path):
            ns_path = ""  # the spec: DEL without a namespace must still release what it can
        errors: list[errdefs.ContainerdError] = []
        for plugin in reversed(cached.conflist.plugins):
            try:
                self._exec(
                    "DEL",
                    cached.conflist,
                    plugin,
                    container_id=container_id,
                    netns=ns_path,
                    ifname=cached.ifname,
                    prev_result=cached.result,
                    capability_args=cached.capability_args,
                )
            except errdefs.ContainerdError as exc:
                errors.append(exc)
        if errors and not force:
            raise errors[0]
        self._remove_cache(network, container_id, ifname)
        if errors:
            raise errors[0]

    def check(self, network: str, *, container_id: str, ifname: str = "eth0") -> None:
        """CHECK: every plugin in order with the cached result (0.4.0 and later)."""
        cached = self.cached(network, container_id, ifname)
        if cached is None or cached.result is None:
            raise errdefs.NotFound(
                f"check of network {network} for {container_id}: no cached result"
            )
        if cached.conflist.cni_version.startswith("0.3"):
            raise errdefs.NotImplemented(
                f"check of network {network}: cniVersion {cached.conflist.cni_version} has no CHECK"
            )
        for plugin in cached.conflist.plugins:
            self._exec(
                "CHECK",
                cached.conflist,
                plugin,
                container_id=container_id,
                netns=cached.netns,
                ifname=cached.ifname,
                prev_result=cached.result,
                capability_args=cached.capability_args,
            )

    # -- the result cache

    def _cache_path(self, network: str, container_id: str, ifname: str) -> Path:
        return self.cache_dir / f"{network}-{container_id}-{ifname}"

    def cached(
        self, network: str, container_id: str, ifname: str = "eth0"
    ) -> CachedAttachment | None:
        """The cache entry of an attachment, None when there is none."""
        path = self._cache_path(network, container_id, ifname)
        try:
            doc = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except ValueError:
            raise errdefs.Unknown(f"cni result cache {path}: not valid json") from None
        conflist = parse_conflist(json.dumps(doc["config"]), path=str(path))
        return CachedAttachment(
            container_id=str(doc["containerId"]),
            netns=str(doc.get("netns", "")),
            ifname=str(doc["ifName"]),
            conflist=conflist,
            capability_args=dict(doc.get("capabilityArgs") or {}),
            result=doc.get("result"),
        )

    def _write_cache(self, a: CachedAttachment) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._cache_path(a.conflist.name, a.container_id, a.ifname)
        doc = {
            "kind": "cniCacheV1",
            "containerId": a.container_id,
            "netns": a.netns,
            "ifName": a.ifname,
            "networkName": a.conflist.name,
            "config": a.conflist.raw,
            "capabilityArgs": dict(a.capability_args),
            "result": a.result,
        }
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, path)

    def _remove_cache(self, network: str, container_id: str, ifname: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._cache_path(network, container_id, ifname).unlink()
