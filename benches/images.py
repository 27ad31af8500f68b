"""The unpack benchmark's images, built here from this machine's files and cached on disk.

- ``debian``: a Debian base image, ``debootstrap --variant=minbase bookworm`` (about 115 MiB
  unpacked) as one gzip layer written by GNU tar (PAX, xattrs, numeric owners, sorted names).
  A smoke run never runs debootstrap: it uses a small one-layer stand-in (busybox and generated
  files), labelled as such.
- ``six``: six layers, about 700 MiB unpacked: 30,000 small files (text and binary data taken
  from this machine's Python library and shared libraries), two 200 MiB files, 140 MiB of
  library-sized files, whiteouts (files and a whole directory), opaque directories, hard links
  and symbolic links, each layer naming its parent directories as image builders do. In gzip
  (``gzip -6``, as ``docker push``) and in zstd (``zstd -3``, media type ``...tar+zstd``); both
  share the same uncompressed tars, so their diff IDs and chain IDs are the same.

Built layers (the uncompressed tar and each compressed blob) are cached under
``/var/tmp/pycontainerd-bench-images`` (``PCD_BENCH_IMAGES`` changes it) in a directory named by
the builder's version and parameters; a ``meta.json`` written last marks it complete.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pycontainerd.descriptor import Descriptor
from pycontainerd.images import mediatypes as mt
from pycontainerd.platforms import host
from pycontainerd.remotes import Resolver
from tests.fixtures.images import busybox_tar

__all__ = ["BenchImage", "Layer", "debian_image", "six_image"]

CACHE = Path(os.environ.get("PCD_BENCH_IMAGES", "/var/tmp/pycontainerd-bench-images"))
#: Bump when a builder changes what it makes: cached images of other versions are not used.
VERSION = 2
MIB = 1 << 20
MTIME = 1_700_000_000
DEBIAN_MIRROR = "http://deb.debian.org/debian"
_MEDIA = {"gzip": mt.MEDIA_TYPE_IMAGE_LAYER_GZIP, "zstd": mt.MEDIA_TYPE_IMAGE_LAYER_ZSTD}
_SUFFIX = {"gzip": ".gz", "zstd": ".zst"}


@dataclass(frozen=True)
class Layer:
    """One layer: its uncompressed tar and its compressed blob, as files."""

    tar: Path
    blob: Path
    media_type: str
    digest: str
    size: int
    diff_id: str
    tar_size: int

    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, self.size)


@dataclass(frozen=True)
class BenchImage:
    """An image whose layers are files; ``label`` says what it is (for the report)."""

    name: str
    label: str
    compression: str
    layers: list[Layer]
    config: bytes
    manifest: bytes

    @property
    def blob_bytes(self) -> int:
        return sum(x.size for x in self.layers) + len(self.config) + len(self.manifest)

    @property
    def tar_bytes(self) -> int:
        return sum(x.tar_size for x in self.layers)

    @property
    def digests(self) -> set[str]:
        return {x.digest for x in self.layers} | {_sha(self.config), _sha(self.manifest)}

    def push(self, resolver: Resolver, ref: str) -> None:
        """Push every blob, then the manifest under ``ref``'s tag."""
        pusher = resolver.pusher(ref)
        for x in self.layers:
            with open(x.blob, "rb") as f:
                pusher.push(x.descriptor(), f, tag=False)
        config = Descriptor(mt.MEDIA_TYPE_IMAGE_CONFIG, _sha(self.config), len(self.config))
        pusher.push(config, io.BytesIO(self.config), tag=False)
        manifest = Descriptor(mt.MEDIA_TYPE_IMAGE_MANIFEST, _sha(self.manifest), len(self.manifest))
        pusher.push(manifest, io.BytesIO(self.manifest), tag=True)


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MIB):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def _image(name: str, label: str, compression: str, layers: list[Layer]) -> BenchImage:
    plat = host()
    config = _encode(
        {
            "architecture": plat.architecture,
            "os": plat.os,
            "config": {"Cmd": ["/bin/sh"], "Labels": {"bench": name}},
            "rootfs": {"type": "layers", "diff_ids": [x.diff_id for x in layers]},
            "created": "2023-11-14T22:13:20Z",
        }
    )
    manifest = _encode(
        {
            "schemaVersion": 2,
            "mediaType": mt.MEDIA_TYPE_IMAGE_MANIFEST,
            "config": {
                "mediaType": mt.MEDIA_TYPE_IMAGE_CONFIG,
                "digest": _sha(config),
                "size": len(config),
            },
            "layers": [
                {"mediaType": x.media_type, "digest": x.digest, "size": x.size} for x in layers
            ],
        }
    )
    return BenchImage(name, label, compression, layers, config, manifest)


# --- the cache ----------------------------------------------------------------------------------


def _cached(key: str, build: Any) -> dict[str, Any]:
    """The meta of the cached build ``key``, made by ``build(directory)`` when missing."""
    directory = CACHE / f"v{VERSION}-{key}"
    meta_path = directory / "meta.json"
    if meta_path.exists():
        meta: dict[str, Any] = json.loads(meta_path.read_text())
        if all(Path(directory, f).exists() for x in meta["layers"] for f in x["files"].values()):
            return meta
    shutil.rmtree(directory, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=CACHE))
    try:
        t0 = time.monotonic()
        meta = build(work)
        meta["build_seconds"] = round(time.monotonic() - t0, 1)
        (work / "meta.json").write_text(json.dumps(meta, indent=1))
        work.rename(directory)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return meta


def _compress(tars: list[Path], compressions: tuple[str, ...]) -> list[dict[str, Any]]:
    """Compress each tar with each of ``compressions`` (two processes at a time); the layers'
    meta: file names, digests and sizes."""
    jobs = [(t, c) for t in tars for c in compressions]
    running: list[subprocess.Popen[bytes]] = []
    for tar, comp in jobs:
        if len(running) >= 2:
            _wait(running.pop(0))
        cmd = ["gzip", "-6", "-n", "-c"] if comp == "gzip" else ["zstd", "-3", "-q", "-c"]
        with open(tar, "rb") as src, open(str(tar) + _SUFFIX[comp], "wb") as dst:
            running.append(subprocess.Popen([*cmd], stdin=src, stdout=dst))
    for p in running:
        _wait(p)
    out = []
    for tar in tars:
        entry: dict[str, Any] = {
            "diff_id": _file_sha(tar),
            "tar_size": tar.stat().st_size,
            "files": {"tar": tar.name},
        }
        for comp in compressions:
            blob = Path(str(tar) + _SUFFIX[comp])
            entry["files"][comp] = blob.name
            entry[comp] = {"digest": _file_sha(blob), "size": blob.stat().st_size}
        out.append(entry)
    return out


def _wait(p: subprocess.Popen[bytes]) -> None:
    if p.wait() != 0:
        raise RuntimeError(f"{' '.join(map(str, p.args))} failed with {p.returncode}")  # type: ignore[arg-type]


def _layers(directory: Path, meta: dict[str, Any], compression: str) -> list[Layer]:
    return [
        Layer(
            tar=directory / x["files"]["tar"],
            blob=directory / x["files"][compression],
            media_type=_MEDIA[compression],
            digest=x[compression]["digest"],
            size=x[compression]["size"],
            diff_id=x["diff_id"],
            tar_size=x["tar_size"],
        )
        for x in meta["layers"]
    ]


# --- debian -------------------------------------------------------------------------------------


def _gnu_tar_dir(root: Path, out: Path) -> None:
    """GNU tar of everything under ``root`` (names without ``./``), sorted, PAX with xattrs."""
    names = sorted(os.listdir(root))
    subprocess.run(
        [
            "tar",
            "--format=pax",
            "--xattrs",
            "--xattrs-include=*",
            "--numeric-owner",
            "--sort=name",
            "-C",
            str(root),
            "-cf",
            str(out),
            *names,
        ],
        check=True,
        capture_output=True,
    )


def _build_debian(work: Path) -> dict[str, Any]:
    tree = work / "rootfs"
    if not shutil.which("debootstrap"):
        raise RuntimeError("debootstrap is missing: scripts/setup installs it")
    result = subprocess.run(
        ["debootstrap", "--variant=minbase", "bookworm", str(tree), DEBIAN_MIRROR],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"debootstrap failed ({result.returncode}): {result.stderr[-2000:]}")
    # what a Debian image builder drops: the package cache, the package lists and the device
    # nodes (a container runtime makes /dev)
    for leftover in ("var/cache/apt/archives", "var/lib/apt/lists", "dev"):
        p = tree / leftover
        if p.is_dir():
            for entry in p.iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
    tar = work / "layer0.tar"
    _gnu_tar_dir(tree, tar)
    shutil.rmtree(tree)
    return {"layers": _compress([tar], ("gzip",))}


def _build_debian_smoke(work: Path) -> dict[str, Any]:
    """The smoke stand-in: busybox and a few hundred generated files, one layer, GNU tar."""
    tree = work / "rootfs"
    tree.mkdir()
    with tarfile.open(fileobj=io.BytesIO(busybox_tar())) as t:
        t.extractall(tree, filter="tar")
    rng = random.Random("debian-smoke")
    pools = _pools()
    for i in range(400):
        d = tree / "usr" / "share" / f"d{i % 20:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:04d}").write_bytes(_piece(rng, pools, rng.randrange(0, 12288)))
    tar = work / "layer0.tar"
    _gnu_tar_dir(tree, tar)
    shutil.rmtree(tree)
    return {"layers": _compress([tar], ("gzip",))}


def debian_image(*, smoke: bool = False) -> BenchImage:
    """The Debian base image (one gzip layer); with ``smoke``, the small stand-in."""
    if smoke:
        key, label = "debian-smoke", "debian stand-in (smoke: busybox + generated, no debootstrap)"
        meta = _cached(key, _build_debian_smoke)
    else:
        key, label = "debian-bookworm-minbase", "debian bookworm minbase (debootstrap)"
        meta = _cached(key, _build_debian)
    directory = CACHE / f"v{VERSION}-{key}"
    return _image("debian", label, "gzip", _layers(directory, meta, "gzip"))


# --- six ----------------------------------------------------------------------------------------


@dataclass
class _Pools:
    text: bytes
    binary: bytes


def _read_pool(paths: Iterator[Path], limit: int) -> bytes:
    out = bytearray()
    for p in paths:
        try:
            out += p.read_bytes()[: 4 * MIB]
        except OSError:
            continue
        if len(out) >= limit:
            break
    return bytes(out[:limit])


def _walk_files(top: str, suffixes: tuple[str, ...]) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath, name)
            if name.endswith(suffixes) and p.is_file() and not p.is_symlink():
                yield p


def _pools() -> _Pools:
    """Text (Python sources) and binary (shared libraries) of this machine, 16 MiB each."""
    text = _read_pool(_walk_files("/usr/lib/python3.11", (".py",)), 16 * MIB)
    binary = _read_pool(_walk_files("/usr/lib", (".so",)), 16 * MIB)
    if len(text) < MIB or len(binary) < MIB:
        raise RuntimeError("too few Python sources or shared libraries here for the pools")
    return _Pools(text, binary)


def _piece(rng: random.Random, pools: _Pools, size: int) -> bytes:
    """``size`` bytes from a pool: two in three text, one in three binary."""
    pool = pools.text if rng.randrange(3) else pools.binary
    if size >= len(pool):
        return (pool * (size // len(pool) + 1))[:size]
    start = rng.randrange(0, len(pool) - size + 1)
    return pool[start : start + size]


def _big(rng: random.Random, pools: _Pools, size: int) -> bytes:
    """A large file: 1 MiB pieces of the binary pool, one in four random (incompressible)."""
    out = bytearray()
    while len(out) < size:
        n = min(MIB, size - len(out))
        if rng.randrange(4) == 0:
            out += rng.randbytes(n)
        else:
            start = rng.randrange(0, len(pools.binary) - n + 1)
            out += pools.binary[start : start + n]
    return bytes(out)


class _LayerWriter:
    """A PAX tar layer being written, naming each parent directory once before its entries."""

    def __init__(self, path: Path) -> None:
        self.tar = tarfile.open(path, "w", format=tarfile.PAX_FORMAT)  # noqa: SIM115
        self.dirs: set[str] = set()

    def _info(self, name: str, kind: bytes, mode: int, uid: int = 0) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime = kind, mode, MTIME
        info.uid = info.gid = uid
        return info

    def parents(self, name: str) -> None:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self.dirs:
                self.dirs.add(d)
                self.tar.addfile(self._info(d, tarfile.DIRTYPE, 0o755))

    def dir(self, name: str, mode: int = 0o755) -> None:
        self.parents(name)
        if name not in self.dirs:
            self.dirs.add(name)
            self.tar.addfile(self._info(name, tarfile.DIRTYPE, mode))

    def file(self, name: str, data: bytes, mode: int = 0o644, uid: int = 0) -> None:
        self.parents(name)
        info = self._info(name, tarfile.REGTYPE, mode, uid)
        info.size = len(data)
        self.tar.addfile(info, io.BytesIO(data))

    def symlink(self, name: str, target: str) -> None:
        self.parents(name)
        info = self._info(name, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self.tar.addfile(info)

    def hardlink(self, name: str, target: str) -> None:
        self.parents(name)
        info = self._info(name, tarfile.LNKTYPE, 0o644)
        info.linkname = target
        self.tar.addfile(info)

    def whiteout(self, name: str) -> None:
        parent, _, base = name.rpartition("/")
        self.file(f"{parent}/.wh.{base}" if parent else f".wh.{base}", b"")

    def opaque(self, directory: str) -> None:
        self.dir(directory)
        self.file(f"{directory}/.wh..wh..opq", b"")

    def close(self) -> None:
        self.tar.close()


def _small_files(
    w: _LayerWriter,
    rng: random.Random,
    pools: _Pools,
    prefix: str,
    count: int,
    *,
    dirs: int,
    links: bool = True,
) -> list[str]:
    """``count`` small files (0 to 16 KiB, mostly a few KiB) in ``dirs`` directories, grouped
    by directory; a symbolic link per 50 files and a hard link per 100 (within the layer)."""
    names = []
    for i in range(count):
        d = i * dirs // max(1, count)
        name = f"{prefix}/d{d:03d}/f{i:05d}"
        size = min(16384, int(rng.lognormvariate(8.0, 1.1)))
        w.file(name, _piece(rng, pools, size), mode=0o755 if i % 10 == 0 else 0o644)
        names.append(name)
        if links and i % 50 == 25:
            w.symlink(f"{prefix}/d{d:03d}/s{i:05d}", f"f{i:05d}")
        if links and i % 100 == 75:
            w.hardlink(f"{prefix}/d{d:03d}/h{i:05d}", name)
    return names


def _build_six(work: Path, scale: float) -> dict[str, Any]:
    rng = random.Random(f"six-{scale}")
    pools = _pools()
    small = max(60, int(30_000 * scale))
    big = max(MIB, int(200 * MIB * scale))
    counts = [int(small * share) for share in (0.40, 0.0, 0.25, 0.0, 0.25)]
    counts.append(small - sum(counts))
    tars = [work / f"layer{i}.tar" for i in range(6)]

    # 1: the base: small files, /etc/conf.d and /var/lib/old (both replaced later)
    w = _LayerWriter(tars[0])
    base = _small_files(w, rng, pools, "usr/share/pkg", counts[0], dirs=120)
    for i in range(40):
        w.file(f"etc/conf.d/c{i:02d}.conf", _piece(rng, pools, 600))
        w.file(f"var/lib/old/o{i:02d}", _piece(rng, pools, 3000))
    w.file("etc/owned", b"owned by 1000\n", mode=0o600, uid=1000)
    w.close()

    # 2: a 200 MiB file
    w = _LayerWriter(tars[1])
    w.file("opt/data/big-a.bin", _big(rng, pools, big))
    w.file("opt/data/readme", b"the data\n")
    w.close()

    # 3: more small files, links into them
    w = _LayerWriter(tars[2])
    lib = _small_files(w, rng, pools, "usr/lib/mod", counts[2], dirs=80)
    w.symlink("usr/lib/current", "mod")
    w.close()

    # 4: the second 200 MiB file and library-sized files (140 MiB in all)
    w = _LayerWriter(tars[3])
    w.file("opt/data/big-b.bin", _big(rng, pools, big))
    for i in range(40):
        w.file(f"usr/lib/x86/lib{i:02d}.so", _big(rng, pools, big * 7 // 400), mode=0o755)
    w.close()

    # 5: small files; deletions (files and a directory); /etc/conf.d made opaque
    w = _LayerWriter(tars[4])
    _small_files(w, rng, pools, "srv/app", counts[4], dirs=80)
    n_deleted = min(120, len(base) // 10)
    for name in base[:: max(1, len(base) // max(1, n_deleted))][:n_deleted]:
        w.whiteout(name)
    w.whiteout("var/lib/old")
    w.opaque("etc/conf.d")
    for i in range(10):
        w.file(f"etc/conf.d/n{i:02d}.conf", _piece(rng, pools, 500))
    w.close()

    # 6: changes: files rewritten, an opaque module directory, a file replaced by a symlink,
    # new files in a home directory, a deleted file of layer 2
    w = _LayerWriter(tars[5])
    n_rewrites = min(200, counts[5] // 2)
    rewrites = lib[1 :: max(1, len(lib) // max(1, n_rewrites))][:n_rewrites]
    for name in rewrites:
        w.file(name, _piece(rng, pools, 2000))
    w.opaque("usr/lib/mod/d000")
    w.file("usr/lib/mod/d000/only", b"the rest is gone\n")
    w.whiteout("opt/data/readme")
    w.symlink("etc/owned", "/dev/null")
    _small_files(w, rng, pools, "home/user/cache", counts[5] - len(rewrites), dirs=40, links=False)
    w.close()
    return {"layers": _compress(tars, ("gzip", "zstd")), "scale": scale}


def six_image(compression: str, *, scale: float = 1.0) -> BenchImage:
    """The six-layer image in ``compression`` (``gzip`` or ``zstd``); ``scale`` shrinks it."""
    if compression not in _MEDIA:
        raise ValueError(f"six image: unknown compression {compression!r}")
    key = f"six-{scale:g}"
    meta = _cached(key, lambda work: _build_six(work, scale))
    directory = CACHE / f"v{VERSION}-{key}"
    layers = _layers(directory, meta, compression)
    mib = sum(x.tar_size for x in layers) / MIB
    label = f"six layers, {mib:.0f} MiB of tar, {compression}" + (
        f" (scale {scale:g})" if scale != 1 else ""
    )
    return _image(f"six-{compression}", label, compression, layers)
