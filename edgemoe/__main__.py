"""``python -m edgemoe`` is the ``edgemoe`` command."""

from edgemoe.cli import main

raise SystemExit(main())
