"""``python -m lipopt``: the same as the ``lipopt`` command."""

from lipopt.cli import main

raise SystemExit(main())
