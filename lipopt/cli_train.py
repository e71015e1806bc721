"""The ``lipopt train`` subcommand: CLIP / weight-regularised / standard training of a ReLU net
(:mod:`lipopt.train`), written as a network file with its training record beside it."""

from __future__ import annotations

import argparse
import sys

TRAIN_EXIT_CODES = """exit codes:
  0  trained, evaluated and written
  2  bad data name, options or output file (nothing was trained)
"""


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integer widths such as 64,64, got {text!r}") from None
    return widths


def cmd_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lipopt.train.clip import train
    from lipopt.train.data import load_data
    from lipopt.train.evaluate import EvalOptions, evaluate_model
    from lipopt.train.models import _check_suffix, arch_spec
    from lipopt.train.options import ClipOptions, TrainOptions
    from lipopt.train.record import write_training

    clip = ClipOptions(n_pairs=args.pairs, box=(0.0, 1.0) if args.pair_box else None)
    opts = TrainOptions(arch=args.arch, hidden=args.hidden, regulariser=args.regulariser, lam=args.lam,
                        target_accuracy=args.target_accuracy, lam_step=args.lam_step,
                        warmup_epochs=args.warmup_epochs, epochs=args.epochs, batch_size=args.batch_size,
                        lr=args.lr, momentum=args.momentum, seed=args.seed, input_norm=args.input_norm,
                        output_norm=args.output_norm, threads=args.threads, clip=clip,
                        select={"rule": args.select, "eps": args.pgd_eps})
    eval_opts = EvalOptions(eps=args.pgd_eps, seed=args.seed)
    out = Path(args.out or f"{args.data}_{args.regulariser}.onnx")
    data = load_data(args.data, seed=args.seed, limit=args.limit)
    _check_suffix(out, arch_spec(opts.arch, data.image_shape, data.n_outputs, opts.hidden, opts.channels))

    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=opts.epochs, desc=f"{args.regulariser} on {args.data}", unit="epoch",
                   file=sys.stderr)

    def progress(h: dict) -> None:
        if bar is None:
            return
        acc = h.get("train_accuracy")
        lip = h["lip_estimate"] if h["lip_estimate"] is not None else h["sampled_estimate"]
        post = {"loss": f"{h['loss']:.4f}",
                "acc" if acc is not None else "mse": f"{acc if acc is not None else h['train_mse']:.4f}",
                "lip~": "-" if lip is None else f"{lip:.4g}", "lam": f"{h['lam']:.4g}"}
        bar.set_postfix(post, refresh=False)
        bar.update(1)

    result = train(data, opts, callback=progress)
    if bar is not None:
        bar.close()
    evaluation = None if args.no_eval else evaluate_model(result.module, data, eval_opts)
    rec = write_training(result, data, out, evaluation, command="lipopt train")
    if not args.quiet:
        if evaluation is not None:
            print("  ".join(f"{k} {v:.4g}" for k, v in evaluation.items()), file=sys.stderr)
        if rec["clip_estimate"]:
            low = rec["clip_lower"]["value"]
            est = rec["clip_estimate"]["value"]
            print(f"CLIP pair estimate ~ {est:.6g} (ESTIMATE); re-evaluated in float64 on the written net: "
                  + (f">= {low:.6g} (LOWER)" if low else "0 (no lower bound)"), file=sys.stderr)
        sel = rec["selection"]
        print(f"lambda: {rec['final_lambda']:.6g} (final); written: epoch {sel['epoch']} ({sel['what']}), "
              f"trained with lambda {rec['selected_lambda']:.6g}", file=sys.stderr)
    print(out)
    print(out.with_suffix(".json"))
    if out.suffix.lower() == ".pt":
        print(f"({out.name} is a state_dict: load it with lipopt.train.load_network('{out}'), which takes "
              f"the architecture from {out.with_suffix('.json').name})", file=sys.stderr)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    from lipopt.train.data import DATASETS
    from lipopt.train.options import ARCHS, NORMS, REGULARISERS, SELECT_RULES

    p = sub.add_parser("train", help="train a ReLU net with CLIP, weight regularisation or none",
                       epilog=TRAIN_EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", choices=DATASETS, help="offline data set")
    p.add_argument("--arch", default="dense", choices=ARCHS)
    p.add_argument("--hidden", type=_widths, default=(64, 64), help="hidden widths, e.g. 64,64")
    p.add_argument("--regulariser", default="clip", choices=REGULARISERS)
    p.add_argument("--lam", type=float, default=0.0, help="(starting) lambda")
    p.add_argument("--target-accuracy", type=float, default=None,
                   help="training accuracy the discrepancy principle steers lambda to (a fraction, e.g. "
                        "0.9); without it lambda stays fixed")
    p.add_argument("--lam-step", type=float, default=None,
                   help="lambda increment of the discrepancy principle")
    p.add_argument("--warmup-epochs", type=int, default=0, help="epochs before lambda is first moved")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pairs", type=int, default=128, help="CLIP's pair set size")
    p.add_argument("--pair-box", action="store_true", help="keep CLIP's pairs in the pixel box [0, 1]")
    p.add_argument("--input-norm", default="l2", choices=NORMS)
    p.add_argument("--output-norm", default="l2", choices=NORMS)
    p.add_argument("--select", default="last", choices=SELECT_RULES,
                   help="the checkpoint written: the last epoch, the epoch closest to the target accuracy "
                        "at or above it, or the paper's: highest PGD accuracy (--pgd-eps) on training images")
    p.add_argument("--pgd-eps", type=float, default=0.1, help="l-inf radius of the PGD evaluation")
    p.add_argument("--limit", type=int, default=None, help="fashion: keep this many training images")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--no-eval", action="store_true", help="skip the noise / PGD evaluation")
    p.add_argument("--out", default=None,
                   help="network file: .onnx or .npz (dense) are read by lipopt.load; .pt is a state_dict "
                        "(default DATA_REGULARISER.onnx); the record goes to the same stem .json")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)
