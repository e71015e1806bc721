"""Where and how a record was made, the same for every command (compute, certify, grid): lipopt and
solver versions, machine, time, and the options as run. JSON files carry it under ``"provenance"``.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

__all__ = ["environment", "provenance"]


def environment() -> dict[str, Any]:
    """lipopt's and each solver's version, and the machine (cores, platform, host, Python)."""
    import platform

    from lipopt_solvers import probe_all

    from lipopt._version import version

    return {
        "lipopt_version": version(),
        "solver_versions": {r["name"]: r.get("version") for r in probe_all(licences=False)},
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "machine": platform.machine(), "node": platform.node(),
                    "python": platform.python_version()},
    }


def provenance(command: str, options: Any = None) -> dict[str, Any]:
    """:func:`environment` plus the command, a UTC timestamp and the options as run (a dataclass or dict;
    ``inf`` is written as the string "inf", as everywhere in lipopt's JSON)."""
    import dataclasses

    from lipopt.result import _clean

    opts = dataclasses.asdict(options) if dataclasses.is_dataclass(options) else dict(options or {})
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    return {"command": command, "timestamp": now, **environment(), "options": _clean(opts)}
