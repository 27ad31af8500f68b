"""The summary of ``benches/test_unpack.py``: every figure side by side, and issue 4's goals."""

from __future__ import annotations

from typing import Any

__all__ = ["unpack_summary"]

#: (key, label); seconds unless the key says otherwise.
ROWS = [
    ("pcd_cold", "cold pull, pyctr images pull (s)"),
    ("ctd_cold", "cold pull, ctr images pull (s)"),
    ("api_cold", "cold pull, Client.pull (s)"),
    ("pcd_present", "unpack, content present, pyctr (s)"),
    ("ctd_present", "unpack, content present, ctr (s)"),
    ("api_present", "unpack, content present, Client.pull (s)"),
    ("pcd_cold_daemon_cpu", "cold pull, our daemon CPU (s)"),
    ("pcd_cold_client_cpu", "cold pull, pyctr CPU (s)"),
    ("ctd_cold_daemon_cpu", "cold pull, containerd CPU (s)"),
    ("ctd_cold_client_cpu", "cold pull, ctr CPU (s)"),
    ("pcd_present_daemon_cpu", "unpack, our daemon CPU (s)"),
    ("pcd_present_client_cpu", "unpack, pyctr CPU (s)"),
    ("ctd_present_daemon_cpu", "unpack, containerd CPU (s)"),
    ("ctd_present_client_cpu", "unpack, ctr CPU (s)"),
    ("tar", "GNU tar -x, layer by layer (s)"),
    ("decompress", "gzip/zstd -dc >/dev/null (s)"),
    ("apply_tar", "apply_layer on tars: fs floor (s)"),
    ("apply_blob", "apply_layer on blobs, in turn (s)"),
    ("apply_blob_parallel", "apply_layer on blobs, at once (s)"),
]
WIDTH = 42


def _ratio(a: Any, b: Any) -> float | None:
    return a / b if isinstance(a, float) and isinstance(b, float) and b > 0 else None


def _goal(tr: Any, text: str, value: float | None, limit: float, smoke: bool) -> None:
    if value is None:
        tr.write_line(f"  {text}: not measured")
        return
    met = "met" if value <= limit else "NOT met"
    if smoke:
        met = "not judged (smoke run)"
    tr.write_line(f"  {text}: {met} ({value:.2f}x, goal <= {limit}x)")


def unpack_summary(tr: Any, results: dict[str, dict[str, Any]], smoke: bool) -> None:
    """Print the unpack figures gathered in ``results["unpack"]``."""
    data = results.get("unpack")
    if not data:
        return
    names = [n for n in ("six-gzip", "six-zstd", "debian") if n in data]
    tr.section("layer unpack: pycontainerd vs containerd 1.6 and the tools, same run")
    if smoke:
        tr.write_line("smoke run (PCD_BENCH_SMOKE=1): tiny images, figures are not meaningful")
    tr.write_line(f"file system: {data.get('_fs', '?')}; medians of the rounds")
    for n in names:
        d = data[n]
        tr.write_line(
            f"  {n}: {d.get('label', '')}; {d.get('layers', 0)} layers, "
            f"{d.get('blob_mib', 0):.1f} MiB of blobs, {d.get('tar_mib', 0):.1f} MiB of tar"
        )
    tr.write_line(f"{'':{WIDTH}}" + "".join(f"{n:>12}" for n in names))
    for key, label in ROWS:
        values = [data[n].get(key) for n in names]
        if all(v is None for v in values):
            continue
        cells = "".join(f"{v:>12.2f}" if isinstance(v, float) else f"{'-':>12}" for v in values)
        tr.write_line(f"{label:{WIDTH}}{cells}")
    for label, a, b in (
        ("cold pull, ours / containerd's", "pcd_cold", "ctd_cold"),
        ("unpack, ours / containerd's", "pcd_present", "ctd_present"),
        ("apply_layer / tar -x", "apply_blob", "tar"),
    ):
        ratios = [_ratio(data[n].get(a), data[n].get(b)) for n in names]
        cells = "".join(f"{r:>11.2f}x" if r is not None else f"{'-':>12}" for r in ratios)
        tr.write_line(f"{label:{WIDTH}}{cells}")
    layer_rows = [
        ("apply_blob_layers", "apply_layer per layer, blobs (s)"),
        ("apply_tar_layers", "apply_layer per layer, tars (s)"),
        ("tar_layers", "GNU tar per layer (s)"),
    ]
    for n in names:
        for key, label in layer_rows:
            if key in data[n]:
                per = " ".join(f"{t:.2f}" for t in data[n][key])
                tr.write_line(f"  {n} {label}: {per}")
    tr.write_line("goals (issue 4):")
    for n in ("six-gzip", "six-zstd"):
        if n in data:
            d = data[n]
            _goal(
                tr,
                f"{n} unpack with content present <= 0.4x containerd's",
                _ratio(d.get("pcd_present"), d.get("ctd_present")),
                0.4,
                smoke,
            )
            _goal(
                tr,
                f"{n} cold pull <= 0.4x ctr images pull",
                _ratio(d.get("pcd_cold"), d.get("ctd_cold")),
                0.4,
                smoke,
            )
    if "debian" in data:
        d = data["debian"]
        _goal(
            tr,
            "debian gzip layer: apply_layer faster than tar -xzf",
            _ratio(d.get("apply_blob"), d.get("tar")),
            1.0,
            smoke,
        )
        floor = d.get("apply_tar")
        dec = d.get("decompress")
        bound = max(floor, dec) if isinstance(floor, float) and isinstance(dec, float) else None
        _goal(
            tr,
            "debian gzip layer: apply_layer <= 1.3x max(gzip -dc, fs floor)",
            _ratio(d.get("apply_blob"), bound),
            1.3,
            smoke,
        )
