"""Where and how a record was made, the same for every command (compute, certify, grid, train): lipopt and
solver versions, machine, time, and the options as run; and the one envelope every JSON file lipopt writes
carries (``docs/schema.md``)::

    {"schema": "lipopt.<kind>/<n>", "lipopt_version": "...", "provenance": {...}, ...payload}

Non-finite numbers are written as the strings ``"inf"``, ``"-inf"`` and ``"nan"`` (plain JSON, readable
everywhere); :func:`read_document` turns them back into floats.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["SCHEMAS", "envelope", "environment", "provenance", "read_document", "schema_id"]

# the current version of each kind of document (docs/schema.md: bumped when a field is removed, renamed
# or changes its meaning or encoding; a new field does not bump it)
SCHEMAS: dict[str, int] = {
    "result": 2,  # one LipschitzResult (also each line of a grid's records.jsonl)
    "resultset": 2,  # lipopt compute --json, ResultSet.to_json
    "robustness": 2,  # lipopt certify --json, one input
    "certify-batch": 2,  # lipopt certify --json / --out DIR summary.json, many inputs
    "grid": 1,  # the grid fields of a records.jsonl line (``grid_schema``)
    "train": 1,  # the training record NET.json of lipopt train
}
_NON_FINITE = {"inf": float("inf"), "-inf": float("-inf"), "nan": float("nan")}


def schema_id(kind: str) -> str:
    """``"lipopt.<kind>/<n>"`` for a kind of :data:`SCHEMAS`."""
    if kind not in SCHEMAS:
        raise ValueError(f"unknown document kind {kind!r}; known: {', '.join(SCHEMAS)}")
    return f"lipopt.{kind}/{SCHEMAS[kind]}"


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


def provenance(command: str, options: Any = None, env: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """:func:`environment` (or ``env``, computed once by the caller) plus the command, a UTC timestamp and
    the options as run (a dataclass or dict; ``inf`` is written as the string "inf", as everywhere in
    lipopt's JSON)."""
    import dataclasses

    from lipopt.result import _clean

    opts = dataclasses.asdict(options) if dataclasses.is_dataclass(options) else dict(options or {})
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    return {"command": command, "timestamp": now, **(env if env is not None else environment()),
            "options": _clean(opts)}


def envelope(kind: str, command: str, options: Any, payload: Mapping[str, Any], *,
             prov: Mapping[str, Any] | None = None, env: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The document ``{"schema", "lipopt_version", "provenance", **payload}`` of a ``kind`` of
    :data:`SCHEMAS`, JSON-clean (numpy to lists and floats, non-finite floats to "inf" / "-inf" / "nan").
    ``prov``: a :func:`provenance` already made (else made here from ``command``, ``options``, ``env``)."""
    from lipopt.result import _clean

    clash = {"schema", "lipopt_version", "provenance"} & set(payload)
    if clash:
        raise ValueError(f"the payload may not carry the envelope's fields {sorted(clash)}")
    p = dict(prov) if prov is not None else provenance(command, options, env)
    return {"schema": schema_id(kind), "lipopt_version": p.get("lipopt_version"), "provenance": _clean(p),
            **_clean(dict(payload))}


def _finite(v: Any) -> Any:
    if isinstance(v, str):
        return _NON_FINITE.get(v, v)
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_finite(x) for x in v]
    return v


def read_document(text: str | Mapping[str, Any], kind: str | None = None) -> dict[str, Any]:
    """A lipopt JSON document (text or parsed) with "inf" / "-inf" / "nan" strings turned back into floats
    (old files that wrote ``Infinity`` are read as well). ``kind``: the schema must be ``lipopt.<kind>/*``
    (any version: old and new files alike; a file without a schema is accepted as an old one)."""
    d = json.loads(text) if isinstance(text, str) else dict(text)
    schema = d.get("schema")
    if kind is not None and schema is not None and not str(schema).startswith(f"lipopt.{kind}/"):
        raise ValueError(f"not a lipopt {kind} document (schema {schema!r})")
    return _finite(d)
