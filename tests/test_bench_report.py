"""The benchmark's own arithmetic: the CPU clock it reads, and ratios to a bracketing floor."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from bench import report
from bench._proc import cpu_seconds
from bench.run import run_all


def _run_all(levels: list[str], logs: Path, **options: Any) -> list[dict[str, Any]]:
    """`run_all` of the floor, gateway and gateway+sep, two repetitions, quietly."""
    return run_all(
        ["floor", "gateway", "gateway+sep"],
        levels,
        reps=2,
        cap_s=1.0,
        logs=logs,
        progress=lambda line: None,
        **options,
    )


def _result(server: str, rep: int, cpu: float, **extra: Any) -> dict[str, Any]:
    return {
        "level": "50",
        "server": server,
        "rep": rep,
        "cpu_us_per_token": cpu,
        "ok": 1,
        "failures": {},
        "unfinished": 0,
        **extra,
    }


def test_cpu_seconds_reads_another_process_to_well_under_a_clock_tick() -> None:
    """The CPU time of a busy child grows by what it spent, not in 10 ms ticks."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys\nwhile sys.stdin.read(1): sum(range(200_000))"],
        stdin=subprocess.PIPE,
    )
    assert child.stdin is not None
    try:
        before = cpu_seconds(child.pid)
        readings = []
        for _ in range(5):
            child.stdin.write(b"x")
            child.stdin.flush()
            time.sleep(0.05)
            readings.append(cpu_seconds(child.pid))
        steps = [b - a for a, b in zip([before, *readings], readings, strict=False)]
        assert all(step > 0 for step in steps)
        # Ticks would show most steps as 0 or a multiple of 10 ms.
        assert any(abs(step * 100 - round(step * 100)) > 0.01 for step in steps)
    finally:
        child.stdin.close()
        child.wait(timeout=10)


def test_cpu_seconds_counts_every_thread() -> None:
    """Time spent in a second thread counts, as in /proc/<pid>/stat."""
    code = (
        "import threading\n"
        "t = threading.Thread(target=lambda: sum(range(3_000_000)))\n"
        "t.start(); t.join()\n"
        "import time; print(time.process_time(), flush=True); time.sleep(5)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    try:
        own = float(child.stdout.readline())
        assert cpu_seconds(child.pid) == pytest.approx(own, abs=0.005)
    finally:
        child.kill()
        child.wait(timeout=10)
        child.stdout.close()


def test_a_ratio_is_taken_to_the_mean_of_the_bracketing_floor_runs() -> None:
    """With the floor run before and after, each repetition's ratio uses both runs."""
    document = {
        "results": [
            _result("floor", 0, 50.0),
            _result("gateway", 0, 66.0),
            _result("floor", 0, 70.0, bracket="after"),
            _result("floor", 1, 60.0),
            _result("gateway", 1, 63.0),
        ]
    }
    res = report.Results(document)
    assert res.ratios("50", "gateway", "cpu_us_per_token") == [66.0 / 60.0, 63.0 / 60.0]
    assert res.ratio("50", "gateway", "cpu_us_per_token") == pytest.approx(1.075)
    # The floor's own rows (its median, its counts) are its first runs.
    assert res.median("50", "floor", "cpu_us_per_token") == 55.0
    assert res.total("50", "floor", "ok") == 2


def test_run_all_brackets_each_level_with_the_floor(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Per repetition and level: the floor, the others rotated, the floor again."""
    calls: list[tuple[str, str]] = []

    def run_one(name: str, level: str, **_: Any) -> dict[str, Any]:
        calls.append((level, name))
        return {
            "cpu_us_per_token": 1.0,
            "tokens_per_s": 1.0,
            "ok": 1,
            "streams": 1,
            "failures": {},
            "unfinished": 0,
            "client_cpu_util": 0.0,
        }

    monkeypatch.setattr("bench.run.run_one", run_one)
    results = _run_all(["50", "200"], tmp_path, pin=False, bracket="floor")
    assert calls[:4] == [("50", n) for n in ("floor", "gateway", "gateway+sep", "floor")]
    assert calls[8:12] == [("50", n) for n in ("floor", "gateway+sep", "gateway", "floor")]
    marks = [(r["rep"], r["level"], r["server"], r.get("bracket")) for r in results]
    assert marks[3] == (0, "50", "floor", "after") and marks[0][3] is None


def test_a_ratio_measured_side_by_side_is_taken_to_its_own_pair() -> None:
    """A server run beside a floor of its own is compared with that floor only."""
    document = {
        "results": [
            _result("gateway", 0, 66.0, pair=_result("floor", 0, 60.0)),
            _result("floor", 0, 60.0),
            _result("gateway+sep", 0, 90.0, pair=_result("floor", 0, 75.0)),
        ]
    }
    res = report.Results(document)
    assert res.ratios("50", "gateway", "cpu_us_per_token") == [66.0 / 60.0]
    assert res.ratios("50", "gateway+sep", "cpu_us_per_token") == [90.0 / 75.0]


def test_side_by_side_alternates_the_pair_and_keeps_to_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each server beside the floor, who starts first alternating by repetition; a
    server limited to some levels runs only there; the floor's own row once a level."""
    pairs: list[tuple[str, tuple[str, str]]] = []

    def run_pair(names: tuple[str, str], level: str, **_: Any) -> list[dict[str, Any]]:
        pairs.append((level, names))
        return [{"cpu_us_per_token": 1.0, "ok": 1, "streams": 1, "failures": {}} for _ in names]

    monkeypatch.setattr("bench.run.run_pair", run_pair)
    results = _run_all(
        ["50", "1000"], tmp_path, pin=True, only={"gateway+sep": ["50"]}, side_by_side="floor"
    )
    assert pairs == [
        ("50", ("floor", "gateway")),
        ("50", ("floor", "gateway+sep")),
        ("1000", ("floor", "gateway")),
        ("50", ("gateway+sep", "floor")),
        ("50", ("gateway", "floor")),
        ("1000", ("gateway", "floor")),
    ]
    rows = [(r["rep"], r["level"], r["server"], "pair" in r) for r in results]
    assert rows.count((0, "1000", "floor", False)) == 1
    assert (1, "1000", "gateway+sep", True) not in rows
