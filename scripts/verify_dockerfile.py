#!/usr/bin/env python3
"""Verify the Dockerfile by doing what it says: `make verify-docker`.

With a Docker engine (`docker info` succeeds) the image is built and run for real. Without
one, the Dockerfile's steps are performed on this machine as faithfully as it allows:

- a fresh directory laid out as the image's filesystem, its WORKDIR filled by the same
  COPY lines, from the build context as `.dockerignore` filters it;
- a fresh virtual environment from this machine's plain Python of the FROM line's version
  (never the project's development venv), standing for the base image's Python, and the
  RUN line's `pip install` run in the WORKDIR exactly as written, with the ENV set so far;
- the RUN line's `useradd`, for a throwaway user (as root; otherwise the process runs as
  the current user, and the script says so), and the CMD run as that user with the ENV;
- then the same checks either way: the HEALTHCHECK command succeeds, one answer streams
  from `/v1/stream` (the simulated model), and on the STOPSIGNAL the open stream gets
  `shutting_down` and the process exits cleanly within the drain time.

Everything the script creates (the directory, the user, the image, the container) is
removed at the end. The Dockerfile is parsed, not copied: an instruction or form this
script cannot follow stops it with the line number, rather than verify something else.

Only the standard library: this runs from a system `python3` (`--parse-only` checks the
Dockerfile and the build context without building anything).

Two deliberate deviations without Docker, printed when they apply: the server listens on
127.0.0.1 instead of 0.0.0.0, and on a free port instead of the image's (a container has
its own network; this machine's is shared).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# What `docker run -e` adds for the check: the simulated model, at a brisk pace.
RUN_ENV = {
    "GEMINI_SSE_PROVIDER": "fake",
    "GEMINI_SSE_FAKE_CHUNKS": "8",
    "GEMINI_SSE_FAKE_DELAY_MS": "20",
    "GEMINI_SSE_FAKE_FIRST_DELAY_MS": "20",
}
DEFAULT_DRAIN_S = 5.0  # GEMINI_SSE_DRAIN_S's default (README, "Configuration")
DOCKER_STOP_TIMEOUT_S = 10.0  # `docker stop` sends SIGKILL after this
# The base image's own environment, before the Dockerfile's ENV lines.
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BASE_ENV = {"LANG": "C.UTF-8"}
# Network settings of this machine that a build needs to reach the package index
# (as Docker passes proxy variables to builds); passed on by name, never printed.
PASSED_TO_BUILD = re.compile(r"^(PIP_\w+|(?i:https?_proxy|no_proxy))$")


class VerifyError(Exception):
    """The Dockerfile or the image does not do what it should (or cannot be followed)."""


# --- Reading the Dockerfile --------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined."""

    line: int
    keyword: str
    args: str


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions: comments dropped, `\\` continuations joined."""
    result: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if (
            not pending
            and stripped.lower().startswith("# escape=")
            and stripped[9:].strip() != "\\"
        ):
            raise VerifyError(f"line {number}: only the default escape character is followed")
        # Comment lines are removed even inside a continuation.
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        keyword, _, args = " ".join(p for p in pending if p).partition(" ")
        result.append(Instruction(start, keyword.upper(), args.strip()))
        pending = []
    if pending:
        raise VerifyError(f"line {start}: the file ends inside a continuation")
    return result


@dataclass(frozen=True)
class Copy:
    """A COPY line: sources in the build context, a destination in the image."""

    line: int
    sources: tuple[str, ...]
    dest: str


@dataclass(frozen=True)
class Healthcheck:
    """The HEALTHCHECK line: its command and timings, in seconds."""

    command: tuple[str, ...]
    interval_s: float = 30.0
    timeout_s: float = 30.0
    start_period_s: float = 0.0
    retries: int = 3


@dataclass
class Image:
    """What the Dockerfile builds, in the order of its steps."""

    python: str = ""  # the FROM line's Python version, e.g. "3.11"
    steps: list[tuple[str, object]] = field(default_factory=list)  # ("env"|"run"|...)
    env: dict[str, str] = field(default_factory=dict)  # every ENV, as at run time
    workdir: str = "/"
    user: str | None = None
    users_created: list[str] = field(default_factory=list)
    expose: list[int] = field(default_factory=list)
    healthcheck: Healthcheck | None = None
    stopsignal: signal.Signals = signal.SIGTERM
    cmd: tuple[str, ...] = ()

    @property
    def copies(self) -> list[Copy]:
        return [step for kind, step in self.steps if kind == "copy" and isinstance(step, Copy)]


def _exec_or_shell(args: str, line: int) -> tuple[str, ...]:
    if args.startswith("["):
        try:
            argv = json.loads(args)
        except json.JSONDecodeError as exc:
            raise VerifyError(f"line {line}: not a JSON array: {args}") from exc
        if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
            raise VerifyError(f"line {line}: the exec form needs a non-empty list of strings")
        return tuple(argv)
    return ("/bin/sh", "-c", args)


def _no_variables(value: str, line: int) -> str:
    if "$" in value:
        raise VerifyError(f"line {line}: variable substitution is not followed: {value}")
    return value


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration(text: str) -> float:
    """A Go duration as Docker takes it (`15s`, `1m30s`, `500ms`), in seconds."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise VerifyError(f"not a duration: {text}")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def _env(args: str, line: int) -> dict[str, str]:
    words = shlex.split(args)
    if words and "=" not in words[0]:  # the legacy form: ENV key value
        key, _, value = args.partition(" ")
        return {key: _no_variables(value.strip(), line)}
    values = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise VerifyError(f"line {line}: ENV expects key=value, got {word!r}")
        values[key] = _no_variables(value, line)
    return values


def _run(args: str, line: int) -> tuple[str, ...]:
    argv = _exec_or_shell(args, line)
    if argv[:2] == ("/bin/sh", "-c"):
        if any(c in args for c in "&|;<>$`"):
            raise VerifyError(f"line {line}: a RUN line with shell syntax is not followed: {args}")
        argv = tuple(shlex.split(args))
    if argv[0] == "useradd" or argv[:2] == ("pip", "install"):
        return argv
    raise VerifyError(f"line {line}: this script follows `useradd` and `pip install`: {args}")


def _healthcheck(args: str, line: int) -> Healthcheck | None:
    if args.upper() == "NONE":
        return None
    match = re.fullmatch(r"(.*?)(?:^|\s)CMD\s+(.+)", args, re.DOTALL)
    if match is None:
        raise VerifyError(f"line {line}: HEALTHCHECK without CMD")
    options, command = match.groups()
    values: dict[str, float] = {}
    names = {
        "--interval": "interval_s",
        "--timeout": "timeout_s",
        "--start-period": "start_period_s",
    }
    retries = 3
    for option in options.split():
        name, _, value = option.partition("=")
        if name in names:
            values[names[name]] = duration(value)
        elif name == "--retries":
            retries = int(value)
        else:
            raise VerifyError(f"line {line}: HEALTHCHECK option {name} is not followed")
    return Healthcheck(_exec_or_shell(command.strip(), line), retries=retries, **values)


def _copy(args: str, line: int) -> Copy:
    if args.startswith("--"):
        raise VerifyError(f"line {line}: COPY options are not followed: {args}")
    words = list(_exec_or_shell(args, line)) if args.startswith("[") else shlex.split(args)
    words = [_no_variables(w, line) for w in words]
    if len(words) < 2:
        raise VerifyError(f"line {line}: COPY needs a source and a destination")
    *sources, dest = words
    if len(sources) > 1 and not dest.endswith("/"):
        raise VerifyError(f"line {line}: with several sources the destination must end in /")
    return Copy(line, tuple(sources), dest)


def parse(text: str) -> Image:
    """The image a Dockerfile describes, or VerifyError at the first line not followed."""
    image = Image()
    for ins in instructions(text):
        kw, args, line = ins.keyword, ins.args, ins.line
        if kw == "FROM":
            match = re.fullmatch(r"python:(\d+\.\d+)(?:\.\d+)?(?:-\w+)*", args)
            if match is None or image.python:
                raise VerifyError(f"line {line}: one FROM python:X.Y[-variant] is followed")
            image.python = match.group(1)
        elif not image.python:
            raise VerifyError(f"line {line}: {kw} before FROM")
        elif kw == "ENV":
            values = _env(args, line)
            image.env.update(values)
            image.steps.append(("env", values))
        elif kw == "RUN":
            argv = _run(args, line)
            if argv[0] == "useradd":
                image.users_created.append(argv[-1])
            image.steps.append(("run", argv))
        elif kw == "WORKDIR":
            path = _no_variables(args, line)
            image.workdir = path if path.startswith("/") else f"{image.workdir}/{path}"
            image.steps.append(("workdir", image.workdir))
        elif kw == "COPY":
            image.steps.append(("copy", _copy(args, line)))
        elif kw == "USER":
            image.user = _no_variables(args, line).split(":")[0]
            if image.user not in image.users_created and image.user not in ("root", "0"):
                raise VerifyError(f"line {line}: USER {image.user} was not created by a RUN line")
        elif kw == "EXPOSE":
            image.expose += [int(p.split("/")[0]) for p in args.split()]
        elif kw == "HEALTHCHECK":
            image.healthcheck = _healthcheck(args, line)
        elif kw == "STOPSIGNAL":
            name = args if args.startswith("SIG") or args.isdigit() else f"SIG{args}"
            image.stopsignal = signal.Signals(int(name)) if name.isdigit() else signal.Signals[name]
        elif kw == "CMD":
            image.cmd = _exec_or_shell(args, line)
        elif kw == "LABEL":
            pass
        else:
            raise VerifyError(f"line {line}: {kw} is not followed by this script; extend it")
    if not image.cmd:
        raise VerifyError("the Dockerfile has no CMD")
    return image


# --- The build context ---------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go's filepath.Match, plus `**`) as a regular expression."""
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif c == "*":
            out, i = out + "[^/]*", i + 1
        elif c == "?":
            out, i = out + "[^/]", i + 1
        elif c == "[" and "]" in pattern[i:]:
            end = pattern.index("]", i)
            body = pattern[i + 1 : end]
            out += "[" + ("^" + body[1:] if body.startswith(("!", "^")) else body) + "]"
            i = end + 1
        else:
            out, i = out + re.escape(c), i + 1
    return re.compile(out + r"\Z")


@dataclass(frozen=True)
class DockerIgnore:
    """The rules of a .dockerignore file: the last rule matching a path decides."""

    rules: tuple[tuple[bool, re.Pattern[str]], ...]  # (excludes, pattern)

    @classmethod
    def read(cls, path: Path) -> DockerIgnore:
        rules = []
        text = path.read_text() if path.exists() else ""
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            include = line.startswith("!")
            cleaned = os.path.normpath(line.lstrip("!").strip()).strip("/")
            rules.append((not include, _pattern_regex(cleaned)))
        return cls(tuple(rules))

    def excludes(self, path: str) -> bool:
        """Whether `path` (relative to the context, with /) is left out of the context."""
        parts = path.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        excluded = False
        for excludes, regex in self.rules:
            # A pattern that matches a directory matches everything in it.
            if any(regex.match(p) for p in prefixes):
                excluded = excludes
        return excluded


def _context_files(root: Path, source: Path, ignore: DockerIgnore) -> list[Path]:
    if source.is_file():
        rel = source.relative_to(root).as_posix()
        return [] if ignore.excludes(rel) else [source]
    return sorted(
        p
        for p in source.rglob("*")
        if p.is_file() and not ignore.excludes(p.relative_to(root).as_posix())
    )


def copy_plan(image: Image, root: Path) -> list[tuple[int, Path, str]]:
    """Each file the COPY lines put in the image: (COPY's line, file in the context, path in
    the image)."""
    ignore = DockerIgnore.read(root / ".dockerignore")
    workdir = "/"
    plan: list[tuple[int, Path, str]] = []
    for kind, step in image.steps:
        if kind == "workdir":
            workdir = str(step)
        if not isinstance(step, Copy):
            continue
        dest = step.dest if step.dest.startswith("/") else f"{workdir.rstrip('/')}/{step.dest}"
        into_dir = step.dest.endswith("/") or step.dest in (".", "./") or len(step.sources) > 1
        for source in step.sources:
            matches = sorted(glob.glob(source, root_dir=root)) or [source]
            for match in matches:
                path = root / match
                if not path.exists():
                    raise VerifyError(
                        f"line {step.line}: COPY source {match} is not in the context"
                    )
                files = _context_files(root, path, ignore)
                if not files:
                    raise VerifyError(f"line {step.line}: .dockerignore leaves out {match}")
                for file in files:
                    if path.is_dir():
                        target = f"{dest.rstrip('/')}/{file.relative_to(path).as_posix()}"
                    elif into_dir:
                        target = f"{dest.rstrip('/')}/{file.name}"
                    else:
                        target = dest
                    plan.append((step.line, file, os.path.normpath(target)))
    return plan


def tracked_files(root: Path) -> list[str]:
    """The files git tracks (paths relative to `root`), or none outside a git checkout."""
    result = subprocess.run(
        ["git", "-C", str(root), "ls-files"], capture_output=True, text=True, check=False
    )
    return result.stdout.splitlines() if result.returncode == 0 else []


def check_context(image: Image, root: Path) -> list[str]:
    """What the image would lack: problems, empty when it has all `pip install` needs."""
    problems: list[str] = []
    try:
        plan = copy_plan(image, root)
    except VerifyError as exc:
        return [str(exc)]
    in_image = {target for _, _, target in plan}
    copied_from = {file.relative_to(root).as_posix() for _, file, _ in plan}
    ignore = DockerIgnore.read(root / ".dockerignore")
    # pip builds in the WORKDIR: the project file and what it names must be there.
    pyproject = f"{image.workdir.rstrip('/')}/pyproject.toml"
    if pyproject not in in_image:
        return [f"{pyproject} is not copied into the image"]
    meta = tomllib.loads((root / "pyproject.toml").read_text())
    needed = [meta["project"].get("readme", "")]
    needed += (
        meta.get("tool", {})
        .get("hatch", {})
        .get("build", {})
        .get("targets", {})
        .get("wheel", {})
        .get("packages", [])
    )
    for rel in filter(None, needed):
        target = f"{image.workdir.rstrip('/')}/{rel}"
        if not any(t == target or t.startswith(target + "/") for t in in_image):
            problems.append(f"{rel} (named in pyproject.toml) is not copied into {image.workdir}")
    # Every tracked file under a copied source must reach the image.
    sources = [s.rstrip("/") for c in image.copies for s in c.sources]
    for rel in tracked_files(root):
        under = any(rel == s or rel.startswith(s + "/") or s == "." for s in sources)
        if under and rel not in copied_from and ignore.excludes(rel):
            problems.append(f".dockerignore leaves out {rel}, which the image copies")
    return problems


# --- Running it --------------------------------------------------------------------------


def say(message: str) -> None:
    print(f"verify-docker: {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run_checked(argv: list[str], log: Path, **kwargs: object) -> None:
    with log.open("ab") as out:
        out.write(f"$ {shlex.join(argv)}\n".encode())
        out.flush()
        result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False, **kwargs)
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise VerifyError(f"`{shlex.join(argv)}` failed ({result.returncode}):\n{tail}")


def _readable_by_everyone(path: Path) -> bool:
    for part in [path, *path.parents]:
        with contextlib.suppress(OSError):
            if not part.stat().st_mode & stat.S_IXOTH:
                return False
    return True


def find_python(version: str) -> str:
    """A plain Python `version` on this machine, outside this project, usable by any user."""
    candidates = [f"/usr/local/bin/python{version}", f"/usr/bin/python{version}"]
    candidates += [p for p in [shutil.which(f"python{version}")] if p]
    for candidate in candidates:
        if not os.path.exists(candidate):
            continue
        probe = subprocess.run(
            [
                candidate,
                "-c",
                "import sys, venv; print(sys.executable, sys.prefix, sys.base_prefix)",
            ],
            capture_output=True,
            text=True,
            check=False,
            env={"PATH": BASE_PATH},
        )
        if probe.returncode != 0:
            continue
        executable, prefix, base_prefix = probe.stdout.split()
        if prefix != base_prefix or Path(executable).resolve().is_relative_to(ROOT):
            continue  # a virtual environment (the project's, or any): not a clean Python
        if os.geteuid() == 0 and not _readable_by_everyone(Path(executable).resolve().parent):
            continue  # the throwaway user could not run it (e.g. under /root)
        return executable
    raise VerifyError(f"no Python {version} on this machine that another user can run")


@dataclass
class Emulation:
    """The image's steps, performed in a fresh directory on this machine."""

    image: Image
    base: Path
    log: Path
    venv: Path = field(init=False)
    user: pwd.struct_passwd | None = None
    created_user: str | None = None

    def __post_init__(self) -> None:
        self.venv = self.base / "python"

    def path_in_image(self, path: str) -> Path:
        return self.base / "image" / path.lstrip("/")

    def build(self) -> None:
        python = find_python(self.image.python)
        say(f"FROM python:{self.image.python}: a fresh venv from {python}")
        _run_checked([python, "-m", "venv", str(self.venv)], self.log, env={"PATH": BASE_PATH})
        env = self.base_env()
        for name in sorted(n for n in os.environ if PASSED_TO_BUILD.match(n)):
            env.setdefault(name, os.environ[name])
        workdir = "/"
        plan = copy_plan(self.image, ROOT)
        for kind, step in self.image.steps:
            if kind == "env" and isinstance(step, dict):
                env.update(step)
            elif kind == "workdir":
                workdir = str(step)
                self.path_in_image(workdir).mkdir(parents=True, exist_ok=True)
            elif isinstance(step, Copy):
                files = [(file, target) for line, file, target in plan if line == step.line]
                for file, target in files:
                    dest = self.path_in_image(target)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(file, dest)
                say(f"COPY (line {step.line}): {len(files)} files into {step.dest} ({workdir})")
            elif kind == "run" and isinstance(step, tuple):
                argv = list(step)
                if argv[0] == "useradd":
                    self.add_user(argv)
                else:
                    say(f"RUN {shlex.join(argv)} (in {workdir}, with the ENV so far)")
                    argv[0] = str(self.venv / "bin" / argv[0])
                    _run_checked(argv, self.log, cwd=self.path_in_image(workdir), env=env)

    def base_env(self) -> dict[str, str]:
        return {"PATH": f"{self.venv}/bin:{BASE_PATH}", "HOME": "/root", **BASE_ENV}

    def add_user(self, argv: list[str]) -> None:
        if os.geteuid() != 0:
            say(f"RUN {shlex.join(argv)}: skipped (not root); the CMD runs as the current user")
            return
        name = f"gsse-verify-{os.getpid()}"
        argv = [*argv[:-1], name]
        if "--uid" in argv:
            uid = argv[argv.index("--uid") + 1]
            with contextlib.suppress(KeyError):
                pwd.getpwuid(int(uid))
                say(f"uid {uid} is taken on this machine: the throwaway user gets another")
                index = argv.index("--uid")
                del argv[index : index + 2]
        say(f"RUN useradd: throwaway user {name} for the image's {self.image.user}")
        _run_checked(argv, self.log)
        self.created_user = name
        self.user = pwd.getpwnam(name)

    def run_env(self, port: int) -> tuple[dict[str, str], list[str]]:
        env = {**self.base_env(), **self.image.env, **RUN_ENV}
        env["HOME"] = self.user.pw_dir if self.user else os.environ.get("HOME", "/")
        deviations = []
        if env.get("GEMINI_SSE_HOST") == "0.0.0.0":
            env["GEMINI_SSE_HOST"] = "127.0.0.1"
            deviations.append("GEMINI_SSE_HOST=127.0.0.1")
        env["GEMINI_SSE_PORT"] = str(port)
        deviations.append(f"GEMINI_SSE_PORT={port}")
        return env, deviations

    @contextlib.contextmanager
    def start(self) -> Iterator[Server]:
        port = free_port()
        env, deviations = self.run_env(port)
        cmd = ["127.0.0.1" if a == "0.0.0.0" else a for a in self.image.cmd]
        if cmd != list(self.image.cmd):
            deviations.append("--host 127.0.0.1")
        say(f"CMD {shlex.join(cmd)} as {self.user.pw_name if self.user else 'the current user'}")
        say(f"deviations for a shared network: {', '.join(deviations)}")
        user: dict[str, Any] = {}
        if self.user is not None:
            user = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        output = (self.base / "server.log").open("wb")
        proc = subprocess.Popen(
            cmd,
            cwd=self.path_in_image(self.image.workdir),
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            **user,
        )

        def healthcheck() -> bool:
            hc = self.image.healthcheck
            assert hc is not None
            try:
                result = subprocess.run(
                    list(hc.command),
                    env=env,
                    cwd=self.path_in_image(self.image.workdir),
                    capture_output=True,
                    timeout=hc.timeout_s,
                    check=False,
                    **user,
                )
            except subprocess.TimeoutExpired:
                return False
            return result.returncode == 0

        def stop() -> None:
            proc.send_signal(self.image.stopsignal)

        def exit_code(timeout: float) -> int | None:
            try:
                return proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                return None

        try:
            if self.user is not None:
                # The process that serves is the user's, like the container's PID 1.
                if os.stat(f"/proc/{proc.pid}").st_uid != self.user.pw_uid:
                    raise VerifyError(f"the server does not run as {self.user.pw_name}")
                say(f"the server process runs as uid {self.user.pw_uid}, not root")
            yield Server(f"http://127.0.0.1:{port}", healthcheck, stop, exit_code, env)
        except VerifyError as exc:
            output.flush()
            tail = (self.base / "server.log").read_text(errors="replace").splitlines()[-20:]
            raise VerifyError(f"{exc}\nthe server's last lines:\n" + "\n".join(tail)) from None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            output.close()

    def clean(self) -> None:
        if self.created_user:
            subprocess.run(
                ["userdel", "--remove", self.created_user], capture_output=True, check=False
            )
            say(f"removed user {self.created_user}")
        shutil.rmtree(self.base, ignore_errors=True)
        say(f"removed {self.base}")


@dataclass
class Server:
    """The running image, however it runs: what the checks need of it."""

    url: str
    healthcheck: Callable[[], bool]
    stop: Callable[[], None]
    exit_code: Callable[[float], int | None]
    env: dict[str, str]


# --- The checks, the same with or without Docker -----------------------------------------


def wait_healthy(server: Server, hc: Healthcheck | None) -> None:
    """The HEALTHCHECK passes, within its start period plus its retries."""
    if hc is None:
        raise VerifyError("the Dockerfile has no HEALTHCHECK to check")
    deadline = time.monotonic() + hc.start_period_s + hc.retries * max(hc.interval_s, 1.0)
    attempts = 0
    while True:
        attempts += 1
        if server.healthcheck():
            say(f"HEALTHCHECK passed (attempt {attempts})")
            return
        if server.exit_code(0) is not None:
            raise VerifyError("the server exited before it was healthy")
        if time.monotonic() > deadline:
            raise VerifyError(f"HEALTHCHECK still failing after {attempts} attempts")
        time.sleep(0.5)


def sse_events(response: Any) -> Iterator[tuple[str, str, str]]:
    """(id, event, data) of each event; `: ping` comments skipped."""
    fields: dict[str, str] = {}
    for raw in response:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if "data" in fields:
                yield fields.get("id", ""), fields.get("event", "message"), fields["data"]
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


def open_stream(server: Server, body: dict[str, object]) -> Any:
    request = urllib.request.Request(
        f"{server.url}/v1/stream",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    return urllib.request.urlopen(request, timeout=30)


def check_one_answer(server: Server) -> None:
    """One answer streams from /v1/stream: numbered events, tokens, one `done`."""
    with open_stream(server, {"message": "What is server-sent events?"}) as response:
        if not response.headers.get("Content-Type", "").startswith("text/event-stream"):
            raise VerifyError(f"/v1/stream answered {response.headers.get('Content-Type')}")
        events = list(sse_events(response))
    ids = [int(i) for i, _, _ in events]
    names = [e for _, e, _ in events]
    if ids != list(range(1, len(events) + 1)) or names[-1:] != ["done"] or "token" not in names:
        raise VerifyError(f"unexpected stream: {names}")
    done = json.loads(events[-1][2])
    say(f"streamed one answer: {names.count('token')} tokens, then done ({done['model']})")


def check_stop(server: Server, signame: str) -> None:
    """On the STOPSIGNAL an open stream gets `shutting_down` and the process exits cleanly."""
    drain_s = float(server.env.get("GEMINI_SSE_DRAIN_S", DEFAULT_DRAIN_S))
    long_answer = {"message": "a long one", "simulation": {"chunks": 2000, "delay_ms": 50}}
    names: list[str] = []
    last: dict[str, object] = {}
    stopper = threading.Thread(target=server.stop)
    stopped = 0.0
    with open_stream(server, long_answer) as response:
        for _, event, data in sse_events(response):
            names.append(event)
            if event == "token" and not stopped:
                stopper.start()
                stopped = time.monotonic()
            last = json.loads(data)
    if not stopped:
        raise VerifyError(f"the long answer ended before it could be stopped: {names}")
    code = server.exit_code(drain_s + 3)
    took = time.monotonic() - stopped
    stopper.join()
    if names[-1:] != ["error"] or last.get("code") != "shutting_down":
        raise VerifyError(f"the open stream did not end with shutting_down: {names[-3:]}, {last}")
    if code is None:
        raise VerifyError(f"still running {drain_s + 3:.0f} s after {signame}")
    if code < 0:
        code = 128 - code  # killed by a signal: the status Docker reports
    # uvicorn re-raises SIGTERM once it has shut down cleanly: 143 is a clean exit too.
    if code not in (0, 128 + signal.SIGTERM):
        raise VerifyError(f"exit status {code} after {signame}")
    say(
        f"{signame}: the open stream got shutting_down; exit status {code} after {took:.1f} s "
        f"(drain {drain_s:.0f} s; docker stop waits {DOCKER_STOP_TIMEOUT_S:.0f} s)"
    )


def run_checks(server: Server, image: Image) -> None:
    wait_healthy(server, image.healthcheck)
    check_one_answer(server)
    check_stop(server, image.stopsignal.name)


# --- With a Docker engine ----------------------------------------------------------------


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


def verify_with_docker(image: Image) -> None:
    tag = f"gemini-sse-verify-{os.getpid()}"
    port = free_port()
    container_port = image.expose[0] if image.expose else 8000
    log = Path(tempfile.mkdtemp(prefix="gemini-sse-docker-")) / "docker.log"
    try:
        say(f"docker build -t {tag} {ROOT}")
        _run_checked(["docker", "build", "-t", tag, str(ROOT)], log)
        env = [a for k, v in RUN_ENV.items() for a in ("-e", f"{k}={v}")]
        _run_checked(
            ["docker", "run", "-d", "--name", tag, "-p", f"127.0.0.1:{port}:{container_port}"]
            + [*env, tag],
            log,
        )

        def healthy() -> bool:
            result = subprocess.run(
                ["docker", "inspect", "--format", "{{.State.Health.Status}}", tag],
                capture_output=True,
                text=True,
                check=False,
            )
            return result.stdout.strip() == "healthy"

        def stop() -> None:
            subprocess.run(
                ["docker", "stop", "--time", str(int(DOCKER_STOP_TIMEOUT_S)), tag],
                capture_output=True,
                check=False,
            )

        def exit_code(timeout: float) -> int | None:
            deadline = time.monotonic() + timeout
            while True:
                state = subprocess.run(
                    [
                        "docker",
                        "inspect",
                        "--format",
                        "{{.State.Running}} {{.State.ExitCode}}",
                        tag,
                    ],
                    capture_output=True,
                    text=True,
                    check=False,
                ).stdout.split()
                if state and state[0] == "false":
                    return int(state[1])
                if time.monotonic() > deadline:
                    return None
                time.sleep(0.2)

        env_in_image = {**image.env, **RUN_ENV}
        run_checks(
            Server(f"http://127.0.0.1:{port}", healthy, stop, exit_code, env_in_image), image
        )
    finally:
        subprocess.run(["docker", "rm", "-f", tag], capture_output=True, check=False)
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)
        shutil.rmtree(log.parent, ignore_errors=True)
        say(f"removed container and image {tag}")


# --- Main --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parse-only", action="store_true", help="check, build nothing")
    args = parser.parse_args(argv)
    try:
        image = parse((ROOT / "Dockerfile").read_text())
        problems = check_context(image, ROOT)
        if problems:
            raise VerifyError("the build context:\n  " + "\n  ".join(problems))
        files = len(copy_plan(image, ROOT))
        say(f"Dockerfile parsed: python {image.python}, {files} files copied, user {image.user}")
        if args.parse_only:
            return 0
        if docker_available():
            verify_with_docker(image)
        else:
            say("no Docker engine (`docker info` fails): performing the steps on this machine")
            base = Path(tempfile.mkdtemp(prefix="gemini-sse-image-"))
            base.chmod(0o755)  # the unprivileged user reads the image's files, as in a container
            emulation = Emulation(image, base, base / "build.log")
            try:
                emulation.build()
                with emulation.start() as server:
                    run_checks(server, image)
            finally:
                emulation.clean()
    except VerifyError as exc:
        say(f"FAILED: {exc}")
        return 1
    say("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
