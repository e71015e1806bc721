"""``lipopt certify`` over many inputs: a folder of images or an ``.npy`` batch (issue 14).

:func:`read_inputs` turns the ``--input`` path into named inputs (a folder: its .png / .jpg / .jpeg / .npy
files in name order, an unreadable one kept with its error; an ``.npy`` of shape (N, *input_shape) or
(N, n): N inputs ``stem[i]``; anything else: one input). :func:`certify_batch` runs
:func:`lipopt.analytic.robustness.certify` per input (the analytic local bound per input; the predictions
and margins of the whole batch in one forward pass, the global product computed once and shared) and
returns a :class:`BatchReport`: one :class:`InputRow` per input (label, margin, local UPPER and LOWER at
each eps, certified radius, PGD distance, time) and :meth:`BatchReport.summary` (mean / median certified
radius; with true labels the certified accuracy at each radius r: the fraction of the readable inputs
classified correctly with a certified radius >= r; without them the certified fraction, prediction kept).
:meth:`BatchReport.records` are grid JSONL records (``lipopt.grid`` format) that ``lipopt table`` renders.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lipopt.errors import InvalidQuestionError
from lipopt.images import IMAGE_SUFFIXES

INPUT_SUFFIXES = (*IMAGE_SUFFIXES, ".npy")


@dataclass
class InputItem:
    name: str
    x: np.ndarray | None  # flat raw input, None when it could not be read
    error: str = ""
    source: str = ""


def read_inputs(path: str | Path, input_shape: tuple[int, ...]) -> list[InputItem]:
    """The inputs named by ``path`` (see the module docstring); a missing path raises FileNotFoundError."""
    from lipopt.cli_certify import read_input

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"input {str(p)!r} not found")
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in INPUT_SUFFIXES)
        if not files:
            raise InvalidQuestionError(f"--input {p}: no {', '.join(INPUT_SUFFIXES)} files in the folder")
        items = []
        for f in files:
            try:
                items.append(InputItem(f.name, read_input(str(f), input_shape), source=str(f)))
            except Exception as exc:  # an unreadable file is reported and the others go on
                items.append(InputItem(f.name, None, f"{type(exc).__name__}: {exc}", str(f)))
        return items
    n = int(np.prod(input_shape))
    if p.suffix.lower() == ".npy":
        arr = _load_npy(p)
        if arr.size != n and arr.ndim >= 2 and arr[0].size == n:
            if arr.shape[1:] not in (tuple(input_shape), (n,)):
                raise InvalidQuestionError(f"--input {p}: a batch of shape {arr.shape}; expected (N, "
                                           f"{', '.join(map(str, input_shape))}) or (N, {n})")
            return [InputItem(f"{p.stem}[{i}]", arr[i].reshape(-1).astype(np.float64), source=str(p))
                    for i in range(arr.shape[0])]
    return [InputItem(p.name, read_input(str(p), input_shape), source=str(p))]


def _load_npy(p: Path) -> np.ndarray:
    try:
        return np.asarray(np.load(p, allow_pickle=False), dtype=np.float64)
    except (ValueError, EOFError, OSError) as exc:
        raise InvalidQuestionError(f"--input {p}: cannot read the .npy file ({type(exc).__name__}: {exc})"
                                   ) from None


def read_labels(text: str | None, n: int) -> np.ndarray | None:
    """True labels from a .npy / .txt file or comma-separated integers (one per input), or None."""
    if not text:
        return None
    p = Path(text)
    try:
        if p.suffix.lower() == ".npy" and p.exists():
            lab = np.load(p, allow_pickle=False).reshape(-1)
        elif p.exists():
            lab = np.array(p.read_text().replace(",", " ").split(), dtype=float)
        else:
            lab = np.array([float(v) for v in text.split(",") if v.strip()])
    except (ValueError, OSError) as exc:
        raise InvalidQuestionError(f"--labels {text!r}: {exc}; give integers (comma-separated, .txt or .npy)"
                                   ) from None
    if lab.size != n or not np.all(lab == np.round(lab)):
        raise InvalidQuestionError(f"--labels: {lab.size} values for {n} inputs (one integer class each)")
    return lab.astype(int)


@dataclass
class InputRow:
    name: str
    label: int | None  # predicted class
    true_label: int | None
    margin: float | None
    eps: list[float]
    local_upper: list[float]
    lower: list[float]
    certified: list[bool]
    radius: float | None
    radius_global: float | None
    pgd_distance: float | None
    pgd_label: int | None
    time_s: float
    error: str = ""
    source: str = ""
    x: np.ndarray | None = field(default=None, repr=False)  # the input in the question's space

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "x"}
        return d


@dataclass
class BatchReport:
    network: str
    input_space: str
    eps: list[float]
    rows: list[InputRow]
    radii: list[float]
    global_upper: float | None
    notes: list[str] = field(default_factory=list)
    lower_run: bool = True  # the LOWER column was computed (--no-lower: not)

    @property
    def ok_rows(self) -> list[InputRow]:
        return [r for r in self.rows if not r.error]

    def summary(self) -> dict[str, Any]:
        ok = self.ok_rows
        rad = np.array([r.radius for r in ok if r.radius is not None], dtype=np.float64)
        labelled = bool(ok) and all(r.true_label is not None for r in ok)
        at: dict[str, float | None] = {}
        for r0 in self.radii:
            if not ok or len(rad) != len(ok):
                at[f"{r0:g}"] = None
                continue
            hits = [(r.radius or 0.0) >= r0 and (not labelled or r.label == r.true_label) for r in ok]
            at[f"{r0:g}"] = float(np.mean(hits))
        out: dict[str, Any] = {
            "inputs": len(self.rows), "read": len(ok), "failed": [r.name for r in self.rows if r.error],
            "mean_radius": float(rad.mean()) if rad.size else None,
            "median_radius": float(np.median(rad)) if rad.size else None,
            "labelled": labelled,
            "certified_accuracy" if labelled else "certified_fraction": at,
        }
        if labelled:
            out["clean_accuracy"] = float(np.mean([r.label == r.true_label for r in ok]))
        return out

    def table(self) -> str:
        ubs_head = " ".join(f"{'UB@' + format(e, 'g'):>12}" for e in self.eps)
        head = (f"{'input':<24} {'label':>5} {'margin':>10} {ubs_head} {'radius':>11} {'PGD dist':>10} "
                f"{'time_s':>7}")
        lines = [f"{self.network} ({self.input_space} inputs): {len(self.rows)} inputs", head]
        for r in self.rows:
            if r.error:
                lines.append(f"{r.name:<24} UNREADABLE: {r.error}")
                continue
            lab = f"{r.label}" + ("" if r.true_label is None else ("" if r.label == r.true_label else "!"))
            ubs = " ".join(f"{u:>12.6g}" for u in r.local_upper)
            rad = "-" if r.radius is None else f"{r.radius:.5g}"
            pgd = "-" if r.pgd_distance is None else f"{r.pgd_distance:.5g}"
            lines.append(f"{r.name:<24} {lab:>5} {r.margin:>10.5g} {ubs} {rad:>11} {pgd:>10} "
                         f"{r.time_s:>7.2f}")
        s = self.summary()
        fmt = lambda v: "-" if v is None else f"{v:.6g}"  # noqa: E731
        lines.append(f"summary: {s['read']} of {s['inputs']} inputs read; certified l2 radius mean "
                     f"{fmt(s['mean_radius'])}, median {fmt(s['median_radius'])}")
        key = "certified_accuracy" if s["labelled"] else "certified_fraction"
        if self.radii:
            what = ("certified accuracy (correct and radius >= r)" if s["labelled"]
                    else "certified fraction (radius >= r; no --labels, so not an accuracy)")
            lines.append(f"{what}: " + ", ".join(f"r={k}: {fmt(v)}" for k, v in s[key].items()))
        if s["failed"]:
            lines.append(f"unreadable inputs ({len(s['failed'])}): {', '.join(s['failed'])}")
        lines.extend(self.notes)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"network": self.network, "input_space": self.input_space, "eps": self.eps,
                "radii": self.radii, "global_upper": self.global_upper,
                "rows": [r.to_dict() for r in self.rows], "summary": self.summary(), "notes": self.notes}

    def records(self, source: str = "") -> list[dict[str, Any]]:
        """Grid-format records: per readable input and eps a local-affine UPPER and a LOWER (best real
        nominal ratio) on the nominal question at that radius; an unreadable input one failed record."""
        from lipopt.domains import Ball, Norm
        from lipopt.result import BoundKind, LipschitzResult, StopReason, Verdict
        from lipopt.spec import Question

        recs: list[dict[str, Any]] = []
        for i, r in enumerate(self.rows):
            base = {"network_name": f"{self.network}[{r.name}]", "network_source": r.source or source,
                    "certify": {k: v for k, v in r.to_dict().items()
                                if k not in ("eps", "local_upper", "lower", "certified")}}
            if r.error:
                res = LipschitzResult("local-affine", BoundKind.UPPER, None, verdict=Verdict.ERROR,
                                      stop=StopReason.ABORTED, message=f"unreadable input: {r.error}",
                                      network=base["network_name"],
                                      question={"description": "unreadable input (not certified)",
                                                "input_space": self.input_space})
                rec = {**res.to_dict(), **base, "question_index": 0, "question_unbound": True,
                       "cell_key": _key(self.network, r.name, "failed"), "cell_index": len(recs)}
                recs.append(rec)
                continue
            for j, (e, ub, lb) in enumerate(zip(r.eps, r.local_upper, r.lower, strict=True)):
                qd = Question(Norm.L2, Norm.L2, Ball(r.x, e, Norm.L2), nominal=True,
                              input_space=self.input_space).to_dict()
                pieces = [("local-affine", BoundKind.UPPER, ub)]
                if self.lower_run:
                    pieces.append(("pgd-ratio", BoundKind.LOWER, lb))
                for method, kind, val in pieces:
                    res = LipschitzResult(method, kind, float(val), question=qd, network=base["network_name"],
                                          wall_time=r.time_s / max(len(r.eps), 1))
                    recs.append({**res.to_dict(), **base, "question_index": j, "cell_wall_s": res.wall_time,
                                 "cell_key": _key(self.network, r.name, method, e), "cell_index": len(recs),
                                 "certify_row": {"input_index": i, "eps": e, "certified": r.certified[j]}})
        return recs


def _input_line(r: InputRow) -> str:
    """The progress line of one certified input: its class, radius and the local bound at the largest eps."""
    rad = "-" if r.radius is None else f"{r.radius:.6g}"
    ub = f", local bound {r.local_upper[-1]:.6g} (UPPER) at eps {r.eps[-1]:g}" if r.local_upper else ""
    return f"class {r.label}, certified radius {rad}{ub} in {r.time_s:.1f}s"


def _key(*parts: object) -> str:
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:16]


def certify_batch(network: Any, items: list[InputItem], eps_list: list[float], *, radii: list[float] = (),
                  labels: np.ndarray | None = None, input_space: str = "raw", options: Any = None,
                  steps: Any = None, progress: bool = False) -> BatchReport:
    """Certify every readable input of ``items`` (raw inputs; mapped to the question's input space) with
    :func:`lipopt.analytic.robustness.certify`: ``options`` (a ``LocalOptions``) and ``steps`` (a
    ``CertifySteps``; its ``clip`` box in raw units) as there. ``progress``: a bar over the inputs (and one
    over each input's eps rows) on a terminal, a line per input and eps row on stderr otherwise."""
    from dataclasses import replace

    from lipopt.analytic.local_bound import LocalOptions
    from lipopt.analytic.robustness import CertifySteps, certify
    from lipopt.network.normalization import clip_in_space, in_input_space
    from lipopt.progress import Steps

    net = in_input_space(network, input_space)
    norm = network.input_normalization if input_space == "normalized" else None
    opts = options or LocalOptions()
    steps = steps or CertifySteps()
    eps = sorted(float(e) for e in eps_list)
    ok = [k for k, it in enumerate(items) if it.x is not None]
    xs = {k: (norm.to_normalized(items[k].x) if norm is not None else items[k].x) for k in ok}
    if ok:  # predictions and margins of the whole batch in one pass
        out = net.forward(np.stack([xs[k] for k in ok]))
        top = np.sort(out, axis=1)
        batch_label = dict(zip(ok, np.argmax(out, axis=1).tolist(), strict=True))
        batch_margin = dict(zip(ok, (top[:, -1] - top[:, -2]).tolist(), strict=True))
    clip_q = clip_in_space(steps.clip, norm, opts.device) if steps.clip is not None else None
    steps_q = replace(steps, clip=clip_q)
    rows: list[InputRow] = []
    glob: float | None = None
    notes: list[str] = []
    bar = Steps("certify", len(items), progress, "input")
    for k, it in enumerate(items):
        true = None if labels is None else int(labels[k])
        if it.x is None:
            rows.append(InputRow(it.name, None, true, None, eps, [], [], [], None, None, None, None, 0.0,
                                 it.error, it.source))
            bar.done(f"input {it.name}", f"UNREADABLE: {it.error}")
            continue
        t0 = time.perf_counter()
        with Steps(f"certify {it.name}", len(eps), progress, "eps", leave=False) as inner:
            rep = certify(net, xs[k], eps, options=opts, steps=steps_q, global_bound=glob, progress=inner)
        glob = rep.rows[0].global_upper if rep.rows else glob
        if rep.label != batch_label[k] or not math.isclose(rep.margin, batch_margin[k], rel_tol=1e-9,
                                                            abs_tol=1e-12):
            notes.append(f"INCONSISTENT: {it.name}: the batched forward pass gives class {batch_label[k]}, "
                         f"margin {batch_margin[k]:.9g}; the per-input one {rep.label}, {rep.margin:.9g}")
        rad = rep.radius
        rows.append(InputRow(it.name, rep.label, true, rep.margin, eps, [r.local_upper for r in rep.rows],
                             [r.lower for r in rep.rows], [r.certified for r in rep.rows],
                             None if rad is None else rad.radius, None if rad is None else rad.radius_global,
                             rep.adversarial_distance, rep.adversarial_label, time.perf_counter() - t0,
                             source=it.source, x=xs[k]))
        notes.extend(n for n in rep.notes[1:] if n not in notes)
        bar.done(f"input {it.name}", _input_line(rows[-1]))
    bar.close()
    notes.insert(0, "UB@eps: certified UPPER on the l2 nominal-point constant on the ball; radius: certified "
                    "l2 radius (eps L(eps) < margin / sqrt 2); PGD dist: an adversarial example at that "
                    "distance (an upper bound on the minimal one)"
                 + ("; eps and radii in normalized input units (x - mean) / std" if norm is not None else ""))
    return BatchReport(network.name or "network", input_space, eps, rows, sorted(float(r) for r in radii),
                       glob, notes, steps.lower)
