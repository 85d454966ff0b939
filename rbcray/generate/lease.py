"""One run per output: a lease object under ``OUT/_lease.json``.

A run creates the lease exclusively (S3 ``If-None-Match: *``, ``O_EXCL`` locally) before it
touches anything else, holding its run id, host, start time and a heartbeat the run refreshes
every :data:`HEARTBEAT_S` seconds. A second run on the same output fails in one line naming the
holder; ``--takeover`` replaces a lease whose heartbeat is older than :data:`STALE_S` (the holder
crashed). A run whose lease was taken over notices at its next heartbeat and stops. The lease is
removed when the run ends, successfully or not.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from typing import Any

from rbcray import storage
from rbcray.errors import RbcrayError
from rbcray.generate import objects

LEASE = "_lease.json"
HEARTBEAT_S = 30.0
#: a heartbeat older than this means the holder is gone (10 missed heartbeats)
STALE_S = 300.0


def _describe(holder: dict[str, Any], now: float) -> str:
    age = now - float(holder.get("heartbeat", 0))
    return (f"run {holder.get('run_id', '?')} on {holder.get('host', '?')} (pid {holder.get('pid', '?')}), "
            f"started {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(float(holder.get('started', 0))))}, "
            f"last heartbeat {age:.0f} s ago")


class Lease:
    """The lease of one run on one output (a context manager: acquire on enter, release on exit)."""

    def __init__(self, out: str, takeover: bool = False, heartbeat_s: float = HEARTBEAT_S, stale_s: float = STALE_S) -> None:
        self.out, self.uri = out, storage.join(out, LEASE)
        self.takeover, self.heartbeat_s, self.stale_s = takeover, heartbeat_s, stale_s
        self.record = {"run_id": uuid.uuid4().hex[:12], "host": socket.gethostname(), "pid": os.getpid(),
                       "started": time.time(), "heartbeat": time.time()}
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def run_id(self) -> str:
        return self.record["run_id"]

    def _body(self) -> bytes:
        return json.dumps(self.record).encode()

    def acquire(self) -> None:
        if objects.create_exclusive(self.uri, self._body()):
            return self._start()
        data = objects.read(self.uri)
        holder = json.loads(data) if data else {}
        now = time.time()
        age = now - float(holder.get("heartbeat", 0))
        if not self.takeover:
            raise RbcrayError(f"{self.out}: another run holds this output: {_describe(holder, now)}; "
                              f"wait for it, or use --takeover if it died (heartbeat older than {self.stale_s:.0f} s)")
        if age < self.stale_s:
            raise RbcrayError(f"{self.out}: --takeover refused: {_describe(holder, now)} is still alive "
                              f"(takeover needs a heartbeat older than {self.stale_s:.0f} s)")
        # the stale lease goes, then the usual exclusive create: of two runs taking over at once,
        # only one creates the new lease
        objects.remove(self.uri)
        if not objects.create_exclusive(self.uri, self._body()):
            raise RbcrayError(f"{self.out}: another run took this output over at the same moment")
        self._start()

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="rbcray-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                self.check()
                self.record["heartbeat"] = time.time()
                objects.write(self.uri, self._body())
            except RbcrayError as e:
                self.lost = str(e)
                return
            except Exception as e:  # noqa: BLE001 - a failed heartbeat is retried at the next beat
                self.lost = None if objects.is_transient(e) else f"{self.uri}: heartbeat failed ({storage._brief(e)})"
                if self.lost:
                    return

    def check(self) -> None:
        """Raise when this run no longer holds the lease (another run took it over)."""
        data = objects.read(self.uri)
        holder = json.loads(data) if data else {}
        if holder.get("run_id") != self.run_id:
            raise RbcrayError(f"{self.out}: this run ({self.run_id}) lost its lease to "
                              + (_describe(holder, time.time()) if holder else "nobody (the lease was removed)"))

    def release(self, checked: bool = False) -> None:
        """Stop the heartbeat and remove the lease if this run still holds it (``checked``: the
        caller has just verified that with :meth:`check`)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        try:
            data = b"" if checked else objects.read(self.uri)
            if checked or (data and json.loads(data).get("run_id") == self.run_id):
                objects.remove(self.uri)
        except Exception:  # noqa: BLE001 - best effort on the way out; a stale lease can be taken over
            pass

    def __enter__(self) -> Lease:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
