"""``python -m stream`` is the ``streamrec`` command."""
from __future__ import annotations

from stream.cli.main import main

raise SystemExit(main())
