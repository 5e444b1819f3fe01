"""A real redis-server on 127.0.0.1 for the tests that need one."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator

import redis

from .servers import free_port, wait_for


@contextlib.contextmanager
def run_redis(directory: str) -> Iterator[str]:
    """Start redis-server on a free port (no persistence); yield its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed: `make test` installs it (apt-get)")
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            directory,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)

    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    try:
        if not wait_for(lambda: proc.poll() is not None or answers()) or proc.poll() is not None:
            raise RuntimeError("redis-server did not start")
        yield url
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)
