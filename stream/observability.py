"""What every streamrec process shares for Prometheus: histogram buckets and the ``/metrics`` server.

Each role builds its own metrics object on an injected registry (``stream.worker.metrics``,
``stream.trainer.metrics``, the demo's in ``stream.cli.demo``); processes that are not a Faust
app (the trainer, the demo) serve theirs with :func:`serve_metrics`.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# The worker's own share of a list's latency: fine where its target (10 ms at p99) is
WORKER_SHARE_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25,
                        0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000)
REFRESH_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1_800.0, 3_600.0)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None


def serve_metrics(registry: CollectorRegistry, host: str, port: int,
                  ready: Callable[[], bool] = lambda: True) -> tuple[Any, str]:
    """Serve ``/metrics``, ``/health/live`` and ``/health/ready`` in a daemon thread.

    Port 0 takes a free port. Returns ``(server, base URL)``; ``server.shutdown()`` stops it.
    """
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path in ("/metrics", "/"):
            return metrics_app(environ, start_response)
        if path in ("/health/live", "/health/ready"):
            ok = path == "/health/live" or bool(ready())
            body = json.dumps({"status": ("live" if path == "/health/live" else "ready") if ok else "starting"})
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "application/json")])
            return [body.encode()]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True, name=f"metrics-{port}").start()
    return server, f"http://{host}:{server.server_port}"


def stop_serving(server: Any) -> None:
    """Stop a server :func:`serve_metrics` started (``None``: nothing to stop)."""
    if server is not None:
        server.shutdown()
        server.server_close()


def close_all(*clients: Any) -> None:
    """Close each Kafka client that is not ``None`` (a process's consumer and producer on shutdown)."""
    for client in clients:
        if client is not None:
            client.close()
