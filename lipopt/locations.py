"""Where lipopt finds the networks published by other Lipschitz projects (LipSDP, LipBaB, ExLipBaB,
ECLipsE, GLipSDP, Avant & Morgansen): one documented location instead of paths that work only from one
folder.

* ``$LIPOPT_EXTERNAL_NETS`` when set (a folder holding ``lipsdp/``, ``lipbab/``, ``exlipbab/``, ...);
* otherwise ``shared/external-nets`` beside the source checkout (``<checkout>/../shared/external-nets``,
  where the project's repository keeps them), then beside the current directory.

Any network or input path may be written ``external:<relative path>`` (``lipopt.load``, ``lipopt
compute``, ``lipopt certify``, the ``networks`` of a grid file): it is resolved against that folder, and a
missing folder is a clear error naming the variable.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ENV", "PREFIX", "external_nets", "resolve"]

#: the environment variable that names the external networks' folder
ENV = "LIPOPT_EXTERNAL_NETS"
#: the path prefix resolved against :func:`external_nets`
PREFIX = "external:"


def _candidates() -> list[Path]:
    checkout = Path(__file__).resolve().parents[1]  # the folder holding lipopt/ (the repository)
    cwd = Path.cwd()
    return [checkout.parent / "shared" / "external-nets", cwd.parent / "shared" / "external-nets",
            cwd / "shared" / "external-nets"]


def external_nets(required: bool = False) -> Path:
    """The external networks' folder: ``$LIPOPT_EXTERNAL_NETS``, else the first existing default
    (see the module's text). ``required=True`` raises :class:`FileNotFoundError`, saying how to set it,
    when the folder does not exist; otherwise the path is returned either way (callers may skip)."""
    env = os.environ.get(ENV)
    if env:
        path = Path(env).expanduser()
    else:
        cands = _candidates()
        path = next((p for p in cands if p.is_dir()), cands[0])
    if required and not path.is_dir():
        where = f"${ENV} = {env!r}" if env else f"the default {path}"
        raise FileNotFoundError(
            f"the external networks' folder does not exist ({where}); set {ENV} to the folder that holds "
            f"lipsdp/, lipbab/, exlipbab/, eclipse/, glipsdp/ and avant/")
    return path


def resolve(source: str | Path) -> Path:
    """``source`` as a path; ``external:<rel>`` becomes ``external_nets() / <rel>``."""
    text = str(source)
    if text.startswith(PREFIX):
        return external_nets(required=True) / text[len(PREFIX):].lstrip("/")
    return Path(source)
