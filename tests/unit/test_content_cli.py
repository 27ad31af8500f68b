"""pyctr content's output helpers print what ctr prints (go-units, Go's tabwriter)."""

from __future__ import annotations

import io

import pytest

from pycontainerd.cli.content import human_duration, human_size, print_tab_table


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0B"),
        (12, "12B"),
        (999, "999B"),
        (1000, "1kB"),
        (1234, "1.234kB"),
        (3_000_000, "3MB"),
        (3_145_728, "3.146MB"),
        (999_999, "1000kB"),
        (1 << 30, "1.074GB"),
    ],
)
def test_human_size(size: int, text: str) -> None:
    assert human_size(size) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.5, "Less than a second"),
        (1, "1 second"),
        (59, "59 seconds"),
        (60, "About a minute"),
        (119, "About a minute"),
        (120, "2 minutes"),
        (3599, "59 minutes"),
        (3600, "About an hour"),
        (5400, "2 hours"),  # rounded, as go-units does
        (47 * 3600, "47 hours"),
        (3 * 86400, "3 days"),
        (20 * 86400, "2 weeks"),
        (90 * 86400, "3 months"),
        (800 * 86400, "2 years"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_tab_table_matches_ctr() -> None:
    # as ctr 1.6 printed it for `ctr content ls`
    d1 = "sha256:92b9edb6cfcc4a3623fb93297a98f83bc12a38b765b6f74bd64554e50d94121a"
    d2 = "sha256:a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447"
    out = io.StringIO()
    print_tab_table(
        [
            ["DIGEST", "SIZE", "AGE", "LABELS"],
            [d1, "3MB", "Less than a second", "-"],
            [d2, "12B", "Less than a second", "-"],
        ],
        out=out,
    )
    assert out.getvalue() == (
        "DIGEST\t\t\t\t\t\t\t\t\tSIZE\tAGE\t\t\tLABELS\n"
        f"{d1}\t3MB\tLess than a second\t-\n"
        f"{d2}\t12B\tLess than a second\t-\n"
    )
    out = io.StringIO()
    print_tab_table([["REF", "SIZE", "AGE", ""]], out=out)  # `ctr content active`, idle
    assert out.getvalue() == "REF\tSIZE\tAGE\t\n"
