"""Where the tests find the repository and the shared folder beside it (wherever a test file sits)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the repository
SHARED = ROOT.parent / "shared"  # ../shared: the external networks, docs and seeds
EXTERNAL = SHARED / "external-nets"
