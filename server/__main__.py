"""``python -m server ...`` runs the ``assistant`` command (see ``server/cli.py``)."""

from server.cli import main

raise SystemExit(main())
