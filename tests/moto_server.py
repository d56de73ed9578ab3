"""moto served over HTTP on 127.0.0.1 (ThreadedMotoServer, a thread of the test process), for tests whose
verifier runs as another process. The server serves moto's process-wide backends: it starts from empty ones
and leaves them empty."""

from __future__ import annotations

import contextlib
import urllib.request
from collections.abc import Iterator

from moto.server import ThreadedMotoServer


def reset_moto(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST")).close()


@contextlib.contextmanager
def moto_endpoint() -> Iterator[str]:
    """The URL of a fresh moto server, stopped (and its backends emptied) on exit."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    reset_moto(url)
    try:
        yield url
    finally:
        reset_moto(url)
        server.stop()
