"""``streamrec worker``: run the Faust app in the foreground until SIGINT/SIGTERM."""
from __future__ import annotations

import logging
import os

from stream.settings import Settings


def run_worker(settings: Settings) -> int:
    import faust

    from stream.app import create_app

    os.makedirs(settings.data_dir, exist_ok=True)
    app = create_app(settings)
    app.conf.datadir = os.path.join(settings.data_dir, "faust")
    print(f"streamrec worker: Kafka {settings.bootstrap_servers}, group {settings.app_id}; "
          f"metrics http://{settings.metrics_host}:{settings.metrics_port}/metrics", flush=True)
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True)
    worker.spinner = None  # its terminal escape codes garble logs and pipes
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        logging.shutdown()
    return 0
