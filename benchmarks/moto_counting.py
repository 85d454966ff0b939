"""A loopback S3 server (moto) that counts the requests it serves, for request-count tests and
``bench_resume.py``: ``with counting_s3() as s3: ...; s3.total()``.

Sets ``AWS_ENDPOINT_URL`` and dummy credentials while open (restored after).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
from collections.abc import Iterator


class _Counter:
    def __init__(self, app) -> None:
        self.app = app
        self.counts: collections.Counter[str] = collections.Counter()
        self.paths: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        query = environ.get("QUERY_STRING", "")
        kind = environ["REQUEST_METHOD"] + (" LIST" if environ["REQUEST_METHOD"] == "GET" and "list-type" in query else "")
        with self.lock:
            self.counts[kind] += 1
            self.paths.append(f"{kind} {environ.get('PATH_INFO', '')}")
        return self.app(environ, start_response)


class CountingS3:
    def __init__(self, counter: _Counter, endpoint: str) -> None:
        self._c, self.endpoint = counter, endpoint

    def reset(self) -> None:
        with self._c.lock:
            self._c.counts.clear()
            self._c.paths.clear()

    def counts(self) -> dict[str, int]:
        with self._c.lock:
            return dict(self._c.counts)

    def requests(self) -> list[str]:
        """'METHOD /bucket/key' of every request since the last reset."""
        with self._c.lock:
            return list(self._c.paths)

    def total(self) -> int:
        return sum(self.counts().values())


@contextlib.contextmanager
def counting_s3() -> Iterator[CountingS3]:
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    counter = _Counter(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, counter, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{server.server_port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield CountingS3(counter, env["AWS_ENDPOINT_URL"])
    finally:
        server.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
