"""Figures measured by the reliability tests, printed at the end of the run.

Figures are recorded, never asserted: timings depend on the machine. They are printed in
pytest's terminal summary (`-ra` or not), so a run of the suite shows what it measured;
docs/reliability.md quotes them. A plugin (`tests/conftest.py` loads it), not this
directory's conftest: with pytest-xdist the tests run in worker processes, each worker
hands its figures to the process that prints the summary, and that process never
collects this directory.
"""

from __future__ import annotations

from typing import Any

import pytest

_FIGURES = pytest.StashKey[list[tuple[str, dict[str, Any]]]]()
_WORKER_OUTPUT = "reliability_figures"  # a worker's figures, sent at its session's end


class Figures:
    """Where a test puts what it measured: `figures.add("what", name=value, ...)`."""

    def __init__(self, store: list[tuple[str, dict[str, Any]]]) -> None:
        self._store = store

    def add(self, title: str, **values: Any) -> None:
        self._store.append((title, values))


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Figures:
    """Figures for the terminal summary of this run."""
    return Figures(request.config.stash.setdefault(_FIGURES, []))


def pytest_sessionfinish(session: pytest.Session) -> None:
    output = getattr(session.config, "workeroutput", None)
    if output is not None:  # a pytest-xdist worker: the controller prints the summary
        output[_WORKER_OUTPUT] = session.config.stash.get(_FIGURES, [])


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: the controller hears a worker end
def pytest_testnodedown(node: Any, error: object) -> None:
    received = getattr(node, "workeroutput", {}).get(_WORKER_OUTPUT, [])
    node.config.stash.setdefault(_FIGURES, []).extend(received)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    recorded = config.stash.get(_FIGURES, [])
    if not recorded:
        return
    terminalreporter.section("reliability figures")
    for title, values in recorded:
        pairs = ", ".join(f"{name}={value}" for name, value in values.items())
        terminalreporter.write_line(f"{title}: {pairs}")
