"""``python -m server ...`` runs the ``assistant`` command (see ``server/cli/main.py``)."""

from server.cli.main import main

raise SystemExit(main())
