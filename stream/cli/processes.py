"""Process control: ``streamrec worker`` in the foreground, and child ``streamrec`` processes.

:func:`run_worker` runs the Faust app until SIGINT/SIGTERM; :func:`spawn_process`, :func:`spawn_worker`,
:func:`stop_process`, :func:`ready_state` and :func:`wait_until_ready` start, watch and stop children
(the demo, the tests and the benchmarks).
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from common.scheduling import to_idle_class
from stream.settings import Settings

#: Seconds a stopping worker may spend on its final commit and clean-up before it is ended.
SHUTDOWN_GRACE_S = 15.0


def _exit_if_stuck() -> None:
    """Faust's shutdown commits offsets; with the broker gone it can wait forever. A supervisor
    expects SIGTERM to end the process, and the uncommitted events are re-read on restart."""
    logging.getLogger(__name__).error("worker did not stop within %.0f s of the signal; exiting", SHUTDOWN_GRACE_S)
    os._exit(1)


def run_worker(settings: Settings) -> int:
    import threading

    import faust

    class BoundedShutdownWorker(faust.Worker):
        def _schedule_shutdown(self, signal: Any) -> None:
            timer = threading.Timer(SHUTDOWN_GRACE_S, _exit_if_stuck)
            timer.daemon = True
            timer.start()
            super()._schedule_shutdown(signal)

    from stream.app import create_app

    os.makedirs(settings.durability.data_dir, exist_ok=True)
    app = create_app(settings, owns_process=True)
    app.conf.datadir = os.path.join(settings.durability.data_dir, "faust")
    print(f"streamrec worker: Kafka {settings.kafka.bootstrap_servers}, group {settings.kafka.app_id}; "
          f"metrics http://{settings.metrics.host}:{settings.metrics.port}/metrics", flush=True)
    worker = BoundedShutdownWorker(app, loglevel=settings.metrics.log_level.upper(), quiet=True)
    worker.spinner = None  # its terminal escape codes garble logs and pipes
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        logging.shutdown()
    return 0


def worker_environment(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process exactly these settings (every leaf of the tree)."""
    return settings.to_env()


def spawn_process(command: list[str], settings: Settings, log: Any, cwd: str | None = None) -> subprocess.Popen:
    """Start ``streamrec COMMAND...`` as a child process with ``settings``; output goes to ``log``."""
    return subprocess.Popen([sys.executable, "-m", "stream", *command], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env={**os.environ, **worker_environment(settings)}, cwd=cwd)


def spawn_worker(settings: Settings, log: Any, cwd: str | None = None) -> subprocess.Popen:
    """Start ``streamrec worker`` as a child process with ``settings``; output goes to ``log``."""
    return spawn_process(["worker"], settings, log, cwd)


def lower_priority(by: int, idle: bool = False) -> int:
    """Lower this process's CPU priority by ``by`` (``os.nice``; 0 leaves it) and, with ``idle``, move it
    to the idle scheduling class where the system has one (Linux ``SCHED_IDLE``); return the new niceness.

    The trainer does this at start: where it shares cores with workers, its training bursts then take
    what the serving path leaves, instead of stalling the lists behind them. Niceness only weighs the
    shares: a niced trainer still holds a core for a slice when a worker wakes. ``SCHED_IDLE`` gives it
    only the CPU nobody else wants. It is set on the calling thread, which every thread started later
    inherits, so call this before anything starts threads (torch's pools included). No privilege is
    needed to lower one's own class; where it is refused or missing, the niceness stays the only change.
    """
    niceness = os.nice(by) if by > 0 else os.nice(0)
    if idle:
        to_idle_class()
    return niceness


def stop_process(process: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within ``timeout`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def ready_state(settings: Settings) -> dict | None:
    """The worker's ``/health/ready`` body when it is ready, else None."""
    url = f"http://{settings.metrics.host}:{settings.metrics.port}/health/ready"
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return json.loads(response.read()) if response.status == 200 else None
    except OSError:
        return None


def wait_until_ready(settings: Settings, process: subprocess.Popen, log_path: Path | None = None,
                     timeout: float = 60.0) -> dict:
    """Wait until ``/health/ready`` says the worker's partitions are assigned; its body.

    Fails at once, with the end of its log, if the worker exits meanwhile.
    """
    def tail() -> str:
        return Path(log_path).read_text(errors="replace")[-3000:] if log_path is not None else ""

    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"worker exited with {process.returncode}:\n{tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"worker not ready after {timeout:.0f} s:\n{tail()}")
        body = ready_state(settings)
        if body is not None:
            return body
        time.sleep(0.1)
