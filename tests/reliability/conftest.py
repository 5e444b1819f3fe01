"""The reliability suite's own fixture: figures measured by the tests, printed at the end.

Figures are recorded, never asserted: timings depend on the machine. They are printed in
pytest's terminal summary (`-ra` or not), so a run of the suite shows what it measured;
docs/reliability.md quotes them.
"""

from __future__ import annotations

from typing import Any

import pytest

_FIGURES = pytest.StashKey[list[tuple[str, dict[str, Any]]]]()


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


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    recorded = config.stash.get(_FIGURES, [])
    if not recorded:
        return
    terminalreporter.section("reliability figures")
    for title, values in recorded:
        pairs = ", ".join(f"{name}={value}" for name, value in values.items())
        terminalreporter.write_line(f"{title}: {pairs}")
