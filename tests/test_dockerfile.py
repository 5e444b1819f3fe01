"""The Dockerfile as scripts/verify_dockerfile.py reads it: fast checks, nothing built.

`make verify-docker` builds and runs the image (or performs its steps on this machine);
these tests run its parse step only, so every `make test` notices a Dockerfile or a
`.dockerignore` that would leave the image without what it needs.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_verifier() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "verify_dockerfile", ROOT / "scripts" / "verify_dockerfile.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while they are made
    spec.loader.exec_module(module)
    return module


verify = load_verifier()


def test_the_dockerfile_is_one_the_verifier_can_follow() -> None:
    """Every instruction parses; the image runs the CLI as the user it creates, with a check."""
    image = verify.parse((ROOT / "Dockerfile").read_text())
    assert image.python == "3.11"
    assert image.user in image.users_created
    assert image.cmd[:2] == ("gemini-sse", "serve")
    assert image.healthcheck is not None
    assert image.expose == [int(image.env["GEMINI_SSE_PORT"])]


def test_every_copy_source_exists_and_reaches_the_image() -> None:
    """COPY sources exist, `.dockerignore` drops none of them nor what pip install needs."""
    image = verify.parse((ROOT / "Dockerfile").read_text())
    assert verify.check_context(image, ROOT) == []
    in_image = {target for _, _, target in verify.copy_plan(image, ROOT)}
    assert "/app/pyproject.toml" in in_image
    assert "/app/src/gemini_sse/__init__.py" in in_image
    assert not any("__pycache__" in target for target in in_image)


@pytest.mark.parametrize(
    ("path", "excluded"),
    [
        ("tests/test_x.py", True),
        ("src/gemini_sse/__pycache__/x.pyc", True),  # `**/__pycache__`, at any depth
        ("gemini_sse.egg-info/PKG-INFO", True),  # `*.egg-info`, at the top only
        ("src/gemini_sse.egg-info/PKG-INFO", False),
        ("README.md", False),
        ("src/gemini_sse/server/static/index.html", False),
    ],
)
def test_dockerignore_is_read_as_docker_reads_it(path: str, excluded: bool) -> None:
    """The verifier applies `.dockerignore` with Docker's rules (directories, `*`, `**`)."""
    ignore = verify.DockerIgnore.read(ROOT / ".dockerignore")
    assert ignore.excludes(path) is excluded


def test_an_exception_rule_brings_a_path_back() -> None:
    """A later `!pattern` re-includes what an earlier pattern left out, as in Docker."""
    ignore = verify.DockerIgnore(
        (
            (True, verify._pattern_regex("docs")),
            (False, verify._pattern_regex("docs/keep.md")),
        )
    )
    assert ignore.excludes("docs/other.md")
    assert not ignore.excludes("docs/keep.md")


@pytest.mark.parametrize(
    "line",
    [
        "ARG VERSION=1",
        "RUN apt-get update && apt-get install -y curl",
        "COPY --from=builder /wheels /wheels",
        "ENV PATH=/opt/venv/bin:$PATH",
        'ENTRYPOINT ["tini", "--"]',
    ],
)
def test_a_dockerfile_the_verifier_cannot_follow_stops_it(line: str) -> None:
    """An instruction the verifier cannot perform faithfully stops it, naming the line."""
    text = (ROOT / "Dockerfile").read_text().replace("WORKDIR /app", f"{line}\nWORKDIR /app")
    with pytest.raises(verify.VerifyError, match=r"line \d+"):
        verify.parse(text)
