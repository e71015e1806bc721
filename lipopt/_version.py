"""lipopt's own version. The single source is ``version`` in ``pyproject.toml``: read from the installed
package's metadata, or from the ``pyproject.toml`` of a source checkout that is not installed."""

from __future__ import annotations

from pathlib import Path


def version() -> str:
    """The version of lipopt (``"unknown"`` when neither the metadata nor pyproject.toml gives one)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("lipopt")
    except PackageNotFoundError:
        pass
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    try:
        import tomllib

        with pyproject.open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, ValueError):
        return "unknown"
    project = data.get("project", {})
    return str(project["version"]) if project.get("name") == "lipopt" and "version" in project else "unknown"
