"""Child processes (Trivy) owned by the thread that started them, so a worker can end its own.

Each child runs in its own process group, so ending it ends whatever it started too, and (on
Linux) asks the kernel to SIGKILL it when the thread that started it dies: a worker killed with
SIGKILL leaves no scanner behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

__all__ = ["CHILDREN", "ChildResult", "Children"]

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass(frozen=True)
class ChildResult:
    """How a child ended."""

    returncode: int
    """Exit status (negative: killed by that signal)."""
    stdout: bytes
    """Everything it wrote to stdout."""
    stderr: bytes
    """Everything it wrote to stderr."""


class Children:
    """The running children of this process, by owning thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[int, set[subprocess.Popen[bytes]]] = {}
        self._acting = threading.local()

    @contextlib.contextmanager
    def owned_by(self, owner: int) -> Iterator[None]:
        """Children started by this thread meanwhile belong to thread ``owner`` (a stage run
        in a helper thread for its worker: :meth:`kill` of the worker ends them too)."""
        self._acting.owner = owner
        try:
            yield
        finally:
            del self._acting.owner

    def current_owner(self) -> int:
        """The thread the children this thread starts belong to (see :meth:`owned_by`)."""
        owner: int = getattr(self._acting, "owner", threading.get_ident())
        return owner

    def run(
        self, command: list[str], *, timeout: float, env: Mapping[str, str] | None = None
    ) -> ChildResult:
        """Run ``command`` (in environment ``env``, default ours) to the end; raise
        :class:`subprocess.TimeoutExpired` past ``timeout`` (after killing its process group) or
        :class:`OSError` when it cannot start."""
        owner = self.current_owner()
        proc = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        with self._lock:
            self._running.setdefault(owner, set()).add(proc)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            raise
        finally:
            with self._lock:
                self._running.get(owner, set()).discard(proc)
        return ChildResult(proc.returncode, stdout, stderr)

    def kill(self, owner: int) -> int:
        """SIGKILL the children started by thread ``owner`` (and their groups); how many."""
        with self._lock:
            procs = list(self._running.get(owner, ()))
        for proc in procs:
            _kill_group(proc)
        return len(procs)

    def kill_all(self) -> int:
        """SIGKILL every child of this process; how many."""
        with self._lock:
            owners = list(self._running)
        return sum(self.kill(owner) for owner in owners)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


CHILDREN = Children()
"""This process's children."""
