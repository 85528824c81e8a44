"""The ``cyclelib`` command line: thin wrappers that parse arguments and call the library.

    cyclelib check-data DIR [--json]    validate an ICBHI folder (exit 0 clean, 1 problems, 2 usage)
    cyclelib synth DIR [--seed N] [--patients N]
    cyclelib download [DIR] [--insecure]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _check_data(args: argparse.Namespace) -> int:
    from cyclelib.icbhi import check_data

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
    print(f"ICBHI folder {report['data_dir']}")
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
    from cyclelib.synthetic import make_synthetic_icbhi

    out = make_synthetic_icbhi(args.dir, seed=args.seed, patients=args.patients)
    print(f"synthetic ICBHI-format set (not real data) written to {out}")
    return 0


def _download(args: argparse.Namespace) -> int:
    from cyclelib.download import download_icbhi

    folder = download_icbhi(args.dir, verify_tls=not args.insecure)
    print(f"ICBHI 2017 ready at {folder}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cyclelib", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check-data", help="validate an ICBHI folder and count its cycles")
    p.add_argument("dir", help="folder with the ICBHI .wav/.txt files and the split file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_check_data)

    p = sub.add_parser("synth", help="write the synthetic teaching set (ICBHI format)")
    p.add_argument("dir")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patients", type=int, default=30)
    p.set_defaults(func=_synth)

    p = sub.add_parser("download", help="download the official ICBHI 2017 files with pooch")
    p.add_argument("dir", nargs="?", default=None, help="target folder (default: the cache)")
    p.add_argument("--insecure", action="store_true",
                   help="skip TLS verification (the official host's certificate is often broken)")
    p.set_defaults(func=_download)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:  # data and usage errors carry a message naming the file
        print(f"cyclelib {args.command}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
