"""Claim a cell (or a pretraining run) of a shared study folder, so that no two workers run it.

A claim is the file ``<run_dir>/.claim`` created with ``O_CREAT | O_EXCL``: the filesystem lets
exactly one process create it, on one host or, for a shared filesystem with atomic exclusive create
(local disks, NFSv3+, Lustre, GPFS), across hosts. It records the host and process id; a claim
left by a killed worker on the same host (its process is gone) is taken over; one left on another
host is not (the process cannot be checked from here): delete its ``.claim`` by hand.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

CLAIM = ".claim"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _stale(path: Path) -> bool:
    """A claim by a process of this host that no longer runs (or an unreadable, empty claim)."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        # Written by os.open + one write: empty only if its writer died in between, or just now.
        try:
            return time.time() - path.stat().st_mtime > 60
        except OSError:
            return False
    return bool(info.get("host") == socket.gethostname() and not _alive(int(info.get("pid", -1))))


def claim(run_dir: Path) -> bool:
    """Try to claim ``run_dir`` for this process; True if it is now ours (also if it already was)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / CLAIM
    me = {"host": socket.gethostname(), "pid": os.getpid()}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if owner(run_dir) == me:
                return True
            if not _stale(path):
                return False
            path.unlink(missing_ok=True)  # a dead worker's claim: take it over (once)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({**me, "time": time.time()}, fh)
        return True
    return False


def owner(run_dir: Path) -> dict[str, object] | None:
    """``{"host", "pid"}`` of the claim on ``run_dir``, or None."""
    try:
        info = json.loads((run_dir / CLAIM).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return {"host": info.get("host"), "pid": info.get("pid")}


def release(run_dir: Path) -> None:
    """Remove this process's claim on ``run_dir`` (someone else's is left alone)."""
    if owner(run_dir) == {"host": socket.gethostname(), "pid": os.getpid()}:
        (run_dir / CLAIM).unlink(missing_ok=True)


def wait_for_claim(
    run_dir: Path,
    done: Callable[[], bool],
    what: str,
    announce: Callable[[str], None] | None = None,
    poll: float = 10.0,
) -> None:
    """Return once ``done()`` or ``run_dir`` is claimed by this process, waiting while another has it."""
    told = False
    while not done() and not claim(run_dir):
        if announce and not told:
            announce(f"{what} is being run by another worker ({owner(run_dir)}); waiting")
            told = True
        time.sleep(poll)
