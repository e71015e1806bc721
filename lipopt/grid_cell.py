"""One grid cell in its own interpreter: ``python -m lipopt.grid_cell`` reads the cell (JSON) from stdin
and writes its record (JSON) to the file named by the payload's ``out``."""

from __future__ import annotations

import json
import sys


def main() -> int:
    from lipopt.grid import run_cell

    payload = json.loads(sys.stdin.read())
    rec = run_cell(payload)
    with open(payload["out"], "w") as f:
        f.write(json.dumps(rec))
    return 0


if __name__ == "__main__":
    sys.exit(main())
