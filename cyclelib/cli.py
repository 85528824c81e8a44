"""The ``cyclelib`` command line: thin wrappers that parse arguments and call the library::

    cyclelib check-data DIR [--json]    validate an ICBHI folder (exit 0 clean, 1 problems, 2 usage)
    cyclelib synth DIR [--seed N] [--patients N]
    cyclelib synth DIR --like-icbhi [--seed N] [--patients-subset P ...] [--workers N]
    cyclelib download [DIR] [--insecure]
    cyclelib reproduce [--data-dir DIR] [--config faithful|small] [--epochs N] [--seeds 0 1 2]
                       [--device auto|cpu|cuda] [--precision fp32|tf32|bf16] [--jobs N]
                       [--out DIR] [--resume] [--overwrite] [--paper-protocol]
    cyclelib evaluate CHECKPOINT [--data-dir DIR]
    cyclelib export CHECKPOINT --out DIR [--int8] [--onnx] [--data-dir DIR]
    cyclelib notebooks OUT [--student]  the notebooks: teacher edition, or student (no solutions)
    cyclelib book OUT [--executed DIR]  the course as a static HTML site (OUT/index.html)
    cyclelib --version

Every command starts with PyTorch's huge-page CPU allocation on (:func:`cyclelib.device.
use_huge_pages`; set THP_MEM_ALLOC_ENABLE=0 to turn it off), before anything imports torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cyclelib import __version__


def _check_data(args: argparse.Namespace) -> int:
    from cyclelib.data import check_data

    if not Path(args.dir).is_dir():
        print(f"cyclelib check-data: {args.dir} is not a folder", file=sys.stderr)
        return 2
    report = check_data(args.dir)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_data_report(report)
    return 1 if report["problems"] else 0


def _print_data_report(report: dict) -> None:
    kind = "SYNTHETIC set (not ICBHI 2017 recordings)" if report["synthetic"] else "ICBHI folder"
    print(f"{kind} {report['data_dir']}")
    print(
        f"  {report['recordings']} annotated recordings, {report['recordings_with_audio']} with "
        f"audio ({report['missing_audio']} without), {report['cycles']} cycles"
    )
    print(f"  {'split':<6}{'recordings':>11}{'cycles':>8}{'normal':>8}{'crackle':>8}"
          f"{'wheeze':>8}{'both':>6}")
    for name, s in report["split"].items():
        print(f"  {name:<6}{s['recordings']:>11}{s['cycles']:>8}{s['normal']:>8}"
              f"{s['crackle']:>8}{s['wheeze']:>8}{s['both']:>6}")
    for split_name, file_name in report["aliases"].items():
        print(f"  split name {split_name} is the file {file_name}")
    print(f"  {len(report['problems'])} problem(s)")
    for p in report["problems"]:
        where = p["file"] + (f":{p['line']}" if p["line"] is not None else "")
        print(f"  - {where}: {p['message']}")


def _synth(args: argparse.Namespace) -> int:
    import time

    from cyclelib.data import make_synthetic_icbhi
    from cyclelib.data.synthetic_full import disk_usage, make_full_synthetic_icbhi

    began = time.perf_counter()
    if args.like_icbhi:
        if args.patients is not None:
            raise ValueError("--patients is for the teaching set: with --like-icbhi, choose real "
                             "patient numbers with --patients-subset")
        out = make_full_synthetic_icbhi(args.dir, seed=args.seed, patients=args.patients_subset,
                                        workers=args.workers)
        kind = "full-size synthetic set with ICBHI 2017's shape"
    elif args.patients_subset is not None:
        raise ValueError("--patients-subset needs --like-icbhi")
    else:
        out = make_synthetic_icbhi(args.dir, seed=args.seed, patients=args.patients or 30)
        kind = "synthetic ICBHI-format set"
    print(f"{kind} (SYNTHETIC, not real data) written to {out}: "
          f"{disk_usage(out) / 1e6:.1f} MB on disk, {time.perf_counter() - began:.1f} s")
    return 0


def _download(args: argparse.Namespace) -> int:
    from cyclelib.data import download_icbhi

    folder = download_icbhi(args.dir, verify_tls=not args.insecure)
    print(f"ICBHI 2017 ready at {folder}")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from cyclelib.checkpoint import RunExistsError
    from cyclelib.reproduction import reproduce
    from cyclelib.results import results_markdown
    from cyclelib.train import TrainingDiverged

    try:
        results = reproduce(
            args.data_dir, config=args.config, epochs=args.epochs, seeds=args.seeds,
            device=args.device, out=args.out, resume=args.resume, overwrite=args.overwrite,
            protocol="paper" if args.paper_protocol else "official",
            train_changes={"precision": args.precision}, jobs=args.jobs,
        )
    except (RunExistsError, TrainingDiverged) as err:
        print(f"cyclelib reproduce: {err}", file=sys.stderr)
        return 1
    print(results_markdown(results))
    print(f"results written to {results['out']}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from cyclelib.evaluation import evaluate_checkpoint

    print(json.dumps(evaluate_checkpoint(args.checkpoint, args.data_dir), indent=2))
    return 0


def _export(args: argparse.Namespace) -> int:
    from cyclelib.export import (
        REPORT,
        ExecutorchMissing,
        export_checkpoint,
        report_markdown,
        require_executorch,
    )

    try:
        require_executorch("cyclelib export (the .pte files)")
        pte = True
    except ExecutorchMissing as err:
        print(f"cyclelib export: {err}", file=sys.stderr)
        if not args.onnx:
            return 1
        print("cyclelib export: writing the ONNX file only", file=sys.stderr)
        pte = False
    try:
        report = export_checkpoint(
            args.checkpoint, args.out, pte=pte, int8=args.int8, onnx=args.onnx,
            data_dir=args.data_dir, calibration_cycles=args.calibration_cycles,
            check_cycles=args.check_cycles,
        )
    except FileNotFoundError as err:
        print(f"cyclelib export: {err}", file=sys.stderr)
        return 1
    print(report_markdown(report))
    print(f"files and {REPORT} written to {args.out}")
    return 0


def _notebooks(args: argparse.Namespace) -> int:
    from cyclelib.editions import write_edition

    written = write_edition(args.out, student=args.student)
    edition = "student edition (no solutions)" if args.student else "teacher edition"
    print(f"{len(written)} notebooks, {edition}, written to {args.out}")
    return 0


def _book(args: argparse.Namespace) -> int:
    from cyclelib.book import build_book

    index = build_book(args.out, executed=args.executed)
    print(f"book written: {index}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cyclelib", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check-data", help="validate an ICBHI folder and count its cycles")
    p.add_argument("dir", help="folder with the ICBHI .wav/.txt files and the split file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_check_data)

    p = sub.add_parser("synth", help="write the synthetic teaching set (ICBHI format)")
    p.add_argument("dir")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patients", type=int, default=None,
                   help="patients of the teaching set (default: 30)")
    p.add_argument("--like-icbhi", action="store_true",
                   help="the full-size set: ICBHI 2017's 920 recordings, split, cycles and "
                        "formats, synthetic sounds (about 2 GB)")
    p.add_argument("--patients-subset", type=int, nargs="+", default=None, metavar="P",
                   help="with --like-icbhi: only these real patient numbers (101-226)")
    p.add_argument("--workers", type=int, default=None,
                   help="with --like-icbhi: processes (default: every CPU)")
    p.set_defaults(func=_synth)

    p = sub.add_parser("download", help="download the official ICBHI 2017 files with pooch")
    p.add_argument("dir", nargs="?", default=None, help="target folder (default: the cache)")
    p.add_argument("--insecure", action="store_true",
                   help="skip TLS verification (the official host's certificate is often broken)")
    p.set_defaults(func=_download)

    p = sub.add_parser("reproduce", help="train and evaluate under the honest protocol (§7)")
    p.add_argument("--data-dir", default=None, help="ICBHI folder (default: the synthetic set)")
    p.add_argument("--config", default="small", help="faithful or small (default: small)")
    p.add_argument("--epochs", type=int, default=None, help="default: the config's")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--jobs", type=int, default=1,
                   help="seeds trained at once, one process each (e.g. 3 on one GPU)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"],
                   help="CUDA only: fp32 (reference), tf32, or bf16 (the fast path)")
    p.add_argument("--out", default=None, help="results folder (default: runs/CONFIG)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--paper-protocol", action="store_true",
                   help="the original's leaky split and test-set selection (comparison only)")
    p.set_defaults(func=_reproduce)

    p = sub.add_parser("evaluate", help="test-split figures of a saved checkpoint")
    p.add_argument("checkpoint", help="a best.pt or last.pt written by reproduce")
    p.add_argument("--data-dir", default=None,
                   help="ICBHI folder (default: the checkpoint's, else the synthetic set)")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("export", help="mobile files (ExecuTorch .pte, ONNX) of a checkpoint (§8)")
    p.add_argument("checkpoint", help="a best.pt or last.pt written by reproduce")
    p.add_argument("--out", required=True, help="folder for the files and export_report.json")
    p.add_argument("--int8", action="store_true", help="also an int8 .pte (PT2E, calibrated)")
    p.add_argument("--onnx", action="store_true",
                   help="also an ONNX file (works without ExecuTorch)")
    p.add_argument("--data-dir", default=None, help="ICBHI folder for calibration and checks "
                   "(default: the checkpoint's, else the synthetic set)")
    p.add_argument("--calibration-cycles", type=int, default=256,
                   help="train-split cycles that calibrate int8 (default: 256)")
    p.add_argument("--check-cycles", type=int, default=100,
                   help="test-split cycles of the parity check (default: 100)")
    p.set_defaults(func=_export)

    p = sub.add_parser("notebooks", help="write the course notebooks (teacher or student edition)")
    p.add_argument("out", help="folder to write the notebooks into")
    p.add_argument("--student", action="store_true",
                   help="the student edition: solution cells removed, exercise stubs kept")
    p.set_defaults(func=_notebooks)

    p = sub.add_parser("book", help="build the course as a static HTML site (needs the book extra)")
    p.add_argument("out", help="folder for the site; OUT/index.html is its first page")
    p.add_argument("--executed", default=None,
                   help="a folder of already executed notebooks to use (default: run them here)")
    p.set_defaults(func=_book)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from cyclelib.device import use_huge_pages  # after parsing: --help needs no torch

    use_huge_pages()
    try:
        return args.func(args)
    except ValueError as err:  # data and usage errors carry a message naming the file
        print(f"cyclelib {args.command}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
