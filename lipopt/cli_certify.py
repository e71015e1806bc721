"""``lipopt certify NET --input IMAGE_OR_NPY_OR_FOLDER --eps E1,E2,... [--plot FILE] [--device cuda]``.

Local affine-ReLU bound (certified UPPER on the l2 nominal-point constant) at each radius, the global
bound, lower bounds from real pairs, the certified l2 radius (Avant & Morgansen, Prop. 6) and a PGD
adversarial example. A folder or an .npy batch certifies every input (lipopt.analytic.batch_certify:
one row each, a summary, ``--out DIR`` grid records). ``--input-space normalized`` measures everything in
the network's normalised inputs. ``add_parser(subparsers)`` registers the sub-command.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from lipopt.errors import InvalidQuestionError
from lipopt.images import IMAGE_SUFFIXES, read_image


def read_input(path: str, input_shape: tuple[int, ...]) -> np.ndarray:
    """A .npy array or an image (PNG/JPEG via lipopt.images, scaled to [0, 1]) shaped to the input."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"input file {path!r} not found")
    if p.suffix.lower() == ".npy":
        try:
            arr = np.asarray(np.load(p, allow_pickle=False), dtype=np.float64)
        except (ValueError, EOFError, OSError) as exc:
            raise InvalidQuestionError(f"--input {path}: cannot read the .npy file ({type(exc).__name__}: "
                                       f"{exc}); it may be empty or truncated") from None
    elif p.suffix.lower() in IMAGE_SUFFIXES:
        try:
            img = read_image(p)
        except ValueError as exc:
            raise InvalidQuestionError(f"--input: {exc}") from None
        if len(input_shape) == 3:
            c = input_shape[0]
            if img.shape[0] != c:
                if c == 1:
                    img = img.mean(axis=0, keepdims=True)
                elif img.shape[0] == 1:
                    img = np.repeat(img, c, axis=0)
        arr = img
    else:
        raise InvalidQuestionError(f"unsupported input file {path!r}: use .npy or an image (.png, .jpg)")
    n = int(np.prod(input_shape))
    if arr.size != n:
        raise InvalidQuestionError(
            f"input {path!r} has shape {arr.shape} ({arr.size} values); the network expects {input_shape}")
    return arr.reshape(-1)


def _eps_list(text: str) -> list[float]:
    try:
        vals = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise InvalidQuestionError(f"--eps must be comma-separated numbers, got {text!r}") from None
    if not vals or any(not np.isfinite(v) or v <= 0 for v in vals):
        raise InvalidQuestionError(f"--eps values must be positive finite numbers, got {text!r}")
    return vals


def load_network(path: str) -> Any:
    from lipopt.network.load import load

    return load(path)


def cmd_certify(args: argparse.Namespace) -> int:
    from lipopt.analytic.batch_certify import read_inputs
    from lipopt.locations import resolve
    from lipopt.validation import check_json_path

    args.input = str(resolve(args.input))  # "external:<rel>" (lipopt.locations)
    check_json_path(args.json)
    if args.json:  # a failed run must not leave an earlier run's report in place
        Path(args.json).unlink(missing_ok=True)
    net = load_network(args.net)
    space = args.input_space
    if space == "normalized":
        from lipopt.network.normalization import in_input_space

        in_input_space(net, space)  # a network without a recorded normalisation: the error, before work
    eps = _eps_list(args.eps)
    clip = None
    if args.clip:
        lo, hi = (float(v) for v in args.clip.split(","))
        clip = (lo, hi)
    items = read_inputs(args.input, net.input_shape)
    if Path(args.input).is_dir() or len(items) > 1 or args.out or args.radii or args.labels:
        return _certify_many(args, net, items, eps, clip)
    return _certify_one(args, net, items[0].x, eps, clip)


def _steps(args: argparse.Namespace, clip: Any) -> Any:
    """The parts of the certification the flags ask for (--no-lower, --no-radius, --no-adversarial)."""
    from lipopt.analytic.robustness import CertifySteps

    return CertifySteps(lower=not args.no_lower, radius=not args.no_radius,
                        adversarial=not args.no_adversarial, seed=args.seed, clip=clip,
                        threads=None if args.threads == 0 else args.threads)


def _run_options(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if k != "func"}


def _local_options(args: argparse.Namespace) -> Any:
    from lipopt.analytic.local_bound import LocalOptions
    from lipopt.analytic.spectral import SpectralOptions
    from lipopt.methods.local_affine import with_cholesky_limit

    spec = None
    if args.cholesky_limit is not None:
        spec = with_cholesky_limit(SpectralOptions(), args.cholesky_limit, "--cholesky-limit")
    return LocalOptions(device=args.device, spectral=spec)


def _certify_one(args: argparse.Namespace, net: Any, x0: Any, eps: list[float], clip: Any) -> int:
    from lipopt.analytic.robustness import certify, plot_report
    from lipopt.cli import write_json_atomic
    from lipopt.provenance import envelope

    rep = certify(net, x0, eps, options=_local_options(args), steps=_steps(args, clip),
                  input_space=args.input_space, progress=not args.quiet)
    print(rep.table())
    if args.plot:
        paths = plot_report(rep, args.plot)
        print(f"plot written to {' and '.join(paths)}")
    if args.json:
        doc = envelope("robustness", "certify", _run_options(args), rep.to_dict())
        write_json_atomic(Path(args.json), json.dumps(doc, indent=2))
    return 0


def _certify_many(args: argparse.Namespace, net: Any, items: list, eps: list[float], clip: Any) -> int:
    from lipopt.analytic.batch_certify import certify_batch, read_labels
    from lipopt.cli import write_json_atomic
    from lipopt.provenance import envelope, provenance

    if args.plot:
        raise InvalidQuestionError("--plot draws one input's bound vs eps; give a single --input for it")
    radii = _eps_list(args.radii) if args.radii else []
    labels = read_labels(args.labels, len(items))
    rep = certify_batch(net, items, eps, radii=radii, labels=labels, input_space=args.input_space,
                        options=_local_options(args), steps=_steps(args, clip),
                        progress=not args.quiet)
    print(rep.table())
    prov = provenance("certify", _run_options(args))
    doc = envelope("certify-batch", "certify", None, rep.to_dict(), prov=prov)
    if args.out:
        from lipopt.grid import RECORDS_FILE
        from lipopt.result import _clean

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        env = {"lipopt_version": doc["lipopt_version"], "provenance": doc["provenance"]}
        lines = [json.dumps(_clean({**r, **env})) for r in rep.records(source=args.input)]
        write_json_atomic(out / RECORDS_FILE, "\n".join(lines) + "\n")
        write_json_atomic(out / "summary.json", json.dumps(doc, indent=2))
        print(f"records written to {out / RECORDS_FILE} (render with `lipopt table {out}`), summary to "
              f"{out / 'summary.json'}")
    if args.json:
        write_json_atomic(Path(args.json), json.dumps(doc, indent=2))
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "certify",
        help="local Lipschitz bound vs eps, certified l2 radius and adversarial search at one input")
    p.add_argument("net", help="network file (see `lipopt compute --help`)")
    p.add_argument("--input", required=True,
                   help="nominal input x0: .npy or image (PNG, scaled to [0, 1]); or many: a folder of "
                        "images / .npy files, or an .npy batch (N x C x H x W or N x n), one row per input")
    p.add_argument("--eps", default="0.001,0.01,0.1,1", help="comma-separated l2 radii")
    p.add_argument("--plot", default=None,
                   help="write a plot of bound vs eps to this file (FILE.png: FILE.pdf is written beside it)")
    p.add_argument("--device", default="cpu", help="torch device: cpu or cuda")
    p.add_argument("--json", default=None, help="write the report as JSON to this file")
    p.add_argument("--clip", default=None, help="LO,HI box for adversarial examples (e.g. 0,1 for images)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="BLAS / torch threads while certifying (default 1: one input's tensors are small, "
                        "and spinning threads on a busy machine cost far more than they gain; 0 leaves them "
                        "as they are)")
    p.add_argument("--cholesky-limit", type=int, default=None, metavar="N",
                   help="masked layers whose smaller side is at most N get the tight certified norm "
                        "(Lanczos + Cholesky certificate), larger ones a looser sound bound (default 6000; "
                        "30000 makes every layer of the Avant CIFAR-10 net tight, up to 1.55x tighter at "
                        "about 70x the time per bound)")
    p.add_argument("--no-lower", action="store_true", help="skip the lower bounds (PGD on the ratio)")
    p.add_argument("--no-radius", action="store_true", help="skip the certified radius")
    p.add_argument("--no-adversarial", action="store_true", help="skip the adversarial example search")
    p.add_argument("--input-space", default="raw", choices=("raw", "normalized"),
                   help="eps, radii and bounds in raw inputs (default) or in the network's normalised inputs "
                        "(x - mean) / std (inputs are read raw and mapped)")
    p.add_argument("--radii", default=None,
                   help="many inputs: comma-separated l2 radii for the certified accuracy (or fraction)")
    p.add_argument("--labels", default=None,
                   help="many inputs: true classes (comma-separated, .txt or .npy), one per input, for the "
                        "certified accuracy")
    p.add_argument("--out", default=None,
                   help="many inputs: write grid-format records (records.jsonl, see `lipopt table DIR`) and "
                        "summary.json to this folder")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress (a bar on a terminal, one line per eps and input otherwise)")
    p.set_defaults(func=cmd_certify)
    return p
