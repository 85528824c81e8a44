"""Data-layer benchmark (DESIGN §2–3): scan the ICBHI folder, then load, resample to 22 kHz and
cut every cycle of every recording that has audio.

    python benchmarks/bench_data.py [--data-dir ../shared/icbhi] [--limit N]

Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

from cyclelib.device import use_huge_pages

use_huge_pages()  # before the first CPU tensor, which importing torchaudio makes (cyclelib.device)

from cyclelib.data import iter_cycle_waveforms, scan_icbhi  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "icbhi")
    parser.add_argument("--limit", type=int, default=None, help="only the first N recordings")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)

    started = time.perf_counter()
    data = scan_icbhi(args.data_dir)
    scan_s = time.perf_counter() - started
    if data.problems:
        sys.exit(f"{len(data.problems)} data problem(s) in {args.data_dir}: run check-data")
    with_audio = data.recordings.loc[data.recordings["has_audio"], "recording"]
    chosen = set(with_audio.iloc[: args.limit] if args.limit else with_audio)
    cycles = data.cycles[data.cycles["recording"].isin(chosen)].reset_index(drop=True)

    started = time.perf_counter()
    done = sum(len(positions) for positions, _ in iter_cycle_waveforms(
        cycles, args.data_dir, progress=False))  # fmt: skip
    load_s = time.perf_counter() - started
    audio_s = float(data.recordings.set_index("recording").loc[sorted(chosen), "duration"].sum())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB

    figures = {
        "annotation_files": len(data.recordings),
        "scan_s": round(scan_s, 3),
        "recordings": len(chosen),
        "cycles": done,
        "audio_minutes": round(audio_s / 60, 2),
        "load_cut_s": round(load_s, 3),
        "recordings_per_s": round(len(chosen) / load_s, 2),
        "cycles_per_s": round(done / load_s, 1),
        "peak_rss_mb": round(peak_mb, 1),
        "threads": torch.get_num_threads(),
    }
    print(f"{'measure':<24}{'value':>12}")
    for key, value in figures.items():
        print(f"{key:<24}{value:>12}")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
