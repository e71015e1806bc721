"""The README's commands and code blocks run as written, from the repository root (outputs it names are
redirected into a temporary folder). Lines marked ``# slow`` and the set-up / benchmark blocks are left
to CI's own commands and the benchmarks."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import EXTERNAL, ROOT

ROOT = ROOT
README = (ROOT / "README.md").read_text()
OUTPUTS = ("out.json", "models/", "bound_vs_eps.png")


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def _redirect(text: str, tmp: Path) -> str:
    for name in OUTPUTS:
        text = text.replace(f'"{name}"', f'"{tmp / name}"').replace(f" {name}", f" {tmp / name}")
    return text


def _commands() -> list[str]:
    cmds = []
    for block in _blocks("bash"):
        for line in block.splitlines():
            line = line.strip()
            if line.startswith("lipopt ") and "# slow" not in line:
                cmds.append(line.split("  #")[0].strip())
    return cmds


def test_readme_has_what_the_test_runs() -> None:
    assert len(_commands()) >= 5 and len(_blocks("python")) >= 3
    assert all("import lipopt" in b for b in _blocks("python")), "every Python block imports lipopt"


@pytest.mark.parametrize("cmd", _commands())
def test_readme_command(cmd: str, tmp_path: Path) -> None:
    if "external:" in cmd and not EXTERNAL.exists():
        pytest.skip(f"the external networks' folder {EXTERNAL} does not exist (LIPOPT_EXTERNAL_NETS)")
    args = shlex.split(_redirect(cmd, tmp_path))
    exe = str(Path(sys.executable).with_name("lipopt"))
    run = subprocess.run([exe if Path(exe).exists() else "lipopt", *args[1:]], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, (cmd, run.stdout[-2000:], run.stderr[-2000:])
    assert run.stdout.strip()
    for name in OUTPUTS:  # nothing written into the repository
        assert not (ROOT / name).exists()


@pytest.mark.parametrize("i", range(len(_blocks("python"))))
def test_readme_python_block(i: int, tmp_path: Path) -> None:
    code = _blocks("python")[i]
    if "external:" in code and not EXTERNAL.exists():
        pytest.skip(f"the external networks' folder {EXTERNAL} does not exist (LIPOPT_EXTERNAL_NETS)")
    run = subprocess.run([sys.executable, "-c", _redirect(code, tmp_path)], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, (code, run.stderr[-3000:])
    printed = [float(v) for v in re.findall(r"EXACT ([0-9.]+)", run.stdout)]
    for expected in re.findall(r"# EXACT ([0-9.]+)\.\.\.", code):  # the values the comments promise
        places = len(expected.split(".")[1])
        assert any(round(v, places) == float(expected) for v in printed), (expected, run.stdout)
