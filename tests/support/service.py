"""Runs ``supplychain serve`` / ``supplychain worker`` as real subprocesses for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import requests

from tests.support.registry import free_port

if TYPE_CHECKING:
    from tests.support.tokens import Tokens

SUPPLYCHAIN = [sys.executable, "-m", "supplychain.cli"]


def service_env(base: Mapping[str, str]) -> dict[str, str]:
    """The process environment plus ``SUPPLYCHAIN_*`` settings, without the caller's own ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPLYCHAIN_")}
    env.update(base)
    return env


class Process:
    """A supplychain command in the background, its output in a log file."""

    def __init__(self, args: list[str], env: Mapping[str, str], log: Path) -> None:
        self.log_path = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*SUPPLYCHAIN, *args],
                env=dict(env),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # so kill() takes its children (trivy) with it
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the process and its children (as a crash would)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


class Server(Process):
    """``supplychain serve`` on a free loopback port."""

    def __init__(
        self,
        env: Mapping[str, str],
        log: Path,
        port: int | None = None,
        *,
        tokens: Tokens | None = None,
    ) -> None:
        self.tokens = tokens
        """The tokens made for this server's database, when the test made some."""
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(["serve", "--listen", f"127.0.0.1:{self.port}"], env, log)

    def auth(self, role: str) -> dict[str, str]:
        """The ``Authorization`` header of this server's token of ``role``."""
        assert self.tokens is not None, "make the server with tokens=issue(env)"
        return self.tokens.headers(role)

    def wait_ready(self, timeout: float = 60) -> None:
        wait_for(
            lambda: self._ready(), timeout, lambda: f"server did not start:\n{self.log()[-3000:]}"
        )

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"server exited:\n{self.log()[-3000:]}")
        try:
            return requests.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False


def wait_for(check: Callable[[], bool], timeout: float, message: Callable[[], str]) -> None:
    """Poll ``check`` until true; fail with ``message()`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(message())
        time.sleep(0.25)


def run_cli(
    args: list[str], env: Mapping[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run one supplychain command to completion."""
    return subprocess.run(
        [*SUPPLYCHAIN, *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
