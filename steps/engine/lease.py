"""Lease renewal: one daemon thread per worker process renews the leases of the
attempts running in it (their steps' and their pool slots'), so a step that runs longer
than its lease is never taken for dead while its worker lives. Between renewals it looks
twice a second, in one query for all of them, whether a run was cancelled (or an attempt
lost) and records how far each step got: a cancelled step is flagged within half a second,
so a long render stops within about a second of the cancel."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

import structlog

from db import outcomes
from db.states import RunStatus
from steps.engine.bridge import run_db

log = structlog.get_logger("reelflow.lease")


@dataclass
class Lease:
    step_id: int
    key: str
    attempt: int
    cancelled: bool = False
    lost: bool = False
    #: How far the step got, as it reports it ({"done": n, "total": m}); recorded on its row.
    progress: dict[str, int] | None = None
    recorded_progress: dict[str, int] | None = None
    renewed_at: float = 0.0


#: How often the renewer looks for cancels and records progress.
WATCH_S = 0.5


class LeaseRenewer:
    """The renewing thread of this process (one, created on first use after fork)."""

    _instance: LeaseRenewer | None = None
    _guard = threading.Lock()

    def __init__(self, lease_seconds: int) -> None:
        self.lease_seconds = lease_seconds
        self.interval = max(1.0, lease_seconds / 3)
        self.leases: dict[tuple[int, int], Lease] = {}
        self.lock = threading.Lock()
        self.thread = threading.Thread(
            target=self._loop, name="reelflow-lease-renewer", daemon=True
        )
        self.thread.start()

    @classmethod
    def get(cls, lease_seconds: int) -> LeaseRenewer:
        with cls._guard:
            if cls._instance is None or not cls._instance.thread.is_alive():
                cls._instance = LeaseRenewer(lease_seconds)
            return cls._instance

    @classmethod
    def reset(cls) -> None:
        cls._instance = None
        cls._guard = threading.Lock()

    def hold(self, lease: Lease) -> None:
        with self.lock:
            self.leases[(lease.step_id, lease.attempt)] = lease

    def release(self, lease: Lease) -> None:
        with self.lock:
            self.leases.pop((lease.step_id, lease.attempt), None)

    def _loop(self) -> None:
        while True:
            time.sleep(WATCH_S)
            with self.lock:
                held = list(self.leases.values())
            if not held:
                continue
            now = time.monotonic()
            for lease in held:
                if now - lease.renewed_at >= self.interval:
                    self._renew(lease)
                    lease.renewed_at = now
            self._watch(held)

    def _renew(self, lease: Lease) -> None:
        try:
            status = run_db(
                outcomes.renew_lease,
                step_id=lease.step_id,
                attempt=lease.attempt,
                lease_seconds=self.lease_seconds,
            )
        except Exception as exc:  # the next beat tries again; the lease has slack
            log.warning("lease_renew_failed", step_key=lease.key, error=repr(exc))
            return
        lease.lost = status is None
        lease.cancelled = status is RunStatus.CANCELLED

    def _watch(self, held: list[Lease]) -> None:
        """Cancels and lost attempts of every lease held, and progress, in one query."""
        progress = {
            lease.step_id: lease.progress
            for lease in held
            if lease.progress is not None and lease.progress != lease.recorded_progress
        }
        try:
            states = run_db(
                outcomes.watch,
                leases=[(lease.step_id, lease.attempt) for lease in held],
                progress=progress,
            )
        except Exception as exc:
            log.debug("lease_watch_failed", error=repr(exc))
            return
        for lease in held:
            status = states.get((lease.step_id, lease.attempt))
            lease.lost = lease.lost or status is None
            lease.cancelled = lease.cancelled or status is RunStatus.CANCELLED
            if lease.step_id in progress:
                lease.recorded_progress = progress[lease.step_id]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # an exited child not yet reaped still answers kill(0)
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def dead_local_owner(owner: str | None, hostname: str) -> str | None:
    """The lease owner (`host/pid`), if it was a process on this host that no longer lives.

    A prefork child killed mid-step leaves a live lease; its message comes back at once
    (reject_on_worker_lost), long before the lease expires. Only this host can tell
    that the owner is dead, so only a same-host owner is taken over early.
    """
    if not owner or "/" not in owner:
        return None
    host, _, pid = owner.rpartition("/")
    if host != hostname or not pid.isdigit():
        return None
    if int(pid) == os.getpid() or _pid_alive(int(pid)):
        return None
    return owner
