"""A real nginx in front of the gateway, configured as docs/operations.md recommends.

The site block under test is read from the "Behind nginx" section of docs/operations.md,
so the configuration the docs show is the one the tests prove. Each nginx runs in the
foreground from its own directory (configuration, logs, pid, temporary files), listens on
a free port on 127.0.0.1, and is stopped when the test ends; no system service is used.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from .servers import free_port

DOCS = Path(__file__).resolve().parent.parent / "docs" / "operations.md"

# The two addresses in the documented block that a test replaces with its own.
DOCUMENTED_LISTEN = "listen 80;"
DOCUMENTED_UPSTREAM = "server 127.0.0.1:8000;"

_MAIN = """\
worker_processes 1;
{user}error_log {prefix}/error.log info;
pid {prefix}/nginx.pid;

events {{
    worker_connections 64;
}}

http {{
    default_type application/octet-stream;
    # One line per request: status, path, nginx's own id, the id the gateway answered with.
    log_format ids '$status $request_uri $request_id $upstream_http_x_request_id';
    access_log {prefix}/access.log ids;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;

{site}
}}
"""


def recommended_site() -> str:
    """The nginx block of docs/operations.md's "Behind nginx" section, as written there."""
    text = DOCS.read_text()
    section = text.split("\n## Behind nginx\n", 1)
    if len(section) != 2:
        raise RuntimeError(f"{DOCS} has no '## Behind nginx' section")
    block = re.search(r"^```nginx\n(.*?)^```", section[1], re.DOTALL | re.MULTILINE)
    if block is None:
        raise RuntimeError(f"the 'Behind nginx' section of {DOCS} has no nginx block")
    return block.group(1)


def changed(site: str, replacements: Mapping[str, str]) -> str:
    """`site` with each line-exact `old` replaced by `new`; each must occur exactly once."""
    for old, new in replacements.items():
        if site.count(old) != 1:
            raise ValueError(f"{old!r} occurs {site.count(old)} times in the site, not once")
        site = site.replace(old, new)
    return site


def _nginx_binary() -> str:
    # Debian installs nginx in /usr/sbin, which is not on every user's PATH.
    binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if binary is None:
        raise RuntimeError("nginx is not installed: `make test` installs it (apt-get)")
    return binary


def _user_directive() -> str:
    # A master started as root hands its workers to `nobody`, who cannot enter the test's
    # private directory; keep them as the user running the tests instead.
    if os.geteuid() != 0:
        return ""
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    return f"user {user} {group};\n"


@dataclass(frozen=True)
class RunningNginx:
    """An nginx in the foreground, serving from its own directory."""

    url: str
    directory: Path

    def access_log(self) -> list[list[str]]:
        """The access log so far: [status, path, nginx's request id, the gateway's] a line."""
        path = self.directory / "access.log"
        return [line.split(" ") for line in path.read_text().splitlines()] if path.exists() else []

    def error_log(self) -> str:
        """nginx's error log so far (level `info`: it says why connections ended)."""
        return _read(self.directory / "error.log")


@contextlib.contextmanager
def run_nginx(directory: Path, site: str, upstream_url: str) -> Iterator[RunningNginx]:
    """nginx serving `site` (an http-level block) in front of `upstream_url` until the end."""
    port = free_port()
    upstream = upstream_url.removeprefix("http://")
    site = changed(
        site,
        {
            DOCUMENTED_LISTEN: f"listen 127.0.0.1:{port};",
            DOCUMENTED_UPSTREAM: f"server {upstream};",
        },
    )
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "nginx.conf"
    conf.write_text(_MAIN.format(user=_user_directive(), prefix=directory, site=site))
    error_log = directory / "error.log"
    command = [_nginx_binary(), "-p", str(directory), "-c", str(conf), "-e", str(error_log)]
    proc = subprocess.Popen(
        [*command, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"nginx exited at start:\n{_read(error_log)}")
            try:
                # Any answer at all: the gateway answers /healthz, through nginx.
                httpx.get(f"{url}/healthz", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not start:\n{_read(error_log)}") from None
                time.sleep(0.02)
        yield RunningNginx(url, directory)
    finally:
        # SIGTERM is nginx's fast shutdown: the master stops its worker, then itself.
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else "(no error log)"


NginxFactory = Callable[..., RunningNginx]


# Imported by the test modules that use it; named apart so the parameter shadows nothing.
@pytest.fixture(name="nginx")
def nginx_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxFactory]:
    """Start nginx in front of a gateway: `nginx(upstream_url, site=...)` returns it.

    `site` defaults to the block docs/operations.md recommends. Every nginx started is
    stopped when the test ends.
    """
    stack = contextlib.ExitStack()

    def start(upstream_url: str, site: str | None = None) -> RunningNginx:
        directory = tmp_path_factory.mktemp("nginx")
        return stack.enter_context(
            run_nginx(directory, recommended_site() if site is None else site, upstream_url)
        )

    with stack:
        yield start
