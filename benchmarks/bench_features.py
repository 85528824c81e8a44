"""Front-end throughput on the CPU with 2 threads (issue 3, DESIGN §4).

Cycles per second for ``HybridSpectrogram`` at batch 1 and batch 32, for librosa per cycle
(``cqt`` + ``feature.melspectrogram``, the reference our tests compare with) and, when the
``nnAudio`` package is installed, for the original's front end per cycle (nnAudio's CQT2010v2
and Gammatonegram + torchaudio's MelSpectrogram), plus the process's peak memory after our
module's runs. Inputs are seeded noise (speed does not depend on content).

Targets (issue 3): at least 115 cycles/s batched, so the 6,898 ICBHI cycles take under 60 s,
with peak memory under 2 GB. Prints a table, then one JSON line with the figures.

    python benchmarks/bench_features.py [--batches 4] [--singles 16] [--references 8]

On a machine shared with other busy processes, 2 threads can be many times slower than 1
(each parallel region waits for a descheduled thread): compare with ``--threads 1`` there.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import time
from collections.abc import Callable

import numpy as np
import torch

from cyclelib.constants import CYCLE_SAMPLES, SAMPLE_RATE
from cyclelib.device import use_huge_pages
from cyclelib.features import FeatureConfig, HybridSpectrogram

ICBHI_CYCLES = 6898  # every annotated cycle of ICBHI 2017
ORIGINAL_MS_PER_CYCLE = 130.0  # the original's front end measured with 2 threads (issue 3)


def peak_memory_mb() -> float:
    """The process's peak resident memory so far, in MB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cycles_per_second(run: Callable[[], object], cycles_per_call: int, calls: int) -> float:
    """Best-of-``calls`` throughput of ``run`` after one warm-up call (wall clock)."""
    return _best(run, cycles_per_call, calls)[0]


def _best(run: Callable[[], object], cycles_per_call: int, calls: int) -> tuple[float, float]:
    """(cycles/s on the wall clock, CPU ms per cycle summed over threads), best of ``calls``.

    The CPU time says what the run costs even on a busy machine: with 2 threads the wall time
    cannot drop below half of it.
    """
    run()
    wall = cpu = float("inf")
    for _ in range(calls):
        start, start_cpu = time.perf_counter(), time.process_time()
        run()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return cycles_per_call / wall, 1000 * cpu / cycles_per_call


def librosa_front_end(waves: np.ndarray, config: FeatureConfig) -> Callable[[], object]:
    """librosa per cycle: the CQT and the mel spectrogram (the two maps librosa has)."""
    import librosa

    def run() -> None:
        for wave in waves:
            librosa.cqt(wave, sr=config.sample_rate, hop_length=config.hop_length,
                        fmin=config.fmin, n_bins=config.n_bins,
                        bins_per_octave=config.bins_per_octave)
            librosa.feature.melspectrogram(
                y=wave, sr=config.sample_rate, n_fft=config.n_fft,
                hop_length=config.hop_length, win_length=config.win_length, window="hann",
                center=True, pad_mode="reflect", power=2.0, n_mels=config.n_bins,
                fmin=config.fmin, fmax=config.fmax, htk=True, norm=None)

    return run


def original_front_end(waves: torch.Tensor, config: FeatureConfig) -> Callable[[], object]:
    """The original's maps per cycle: nnAudio CQT2010v2 and Gammatonegram, torchaudio mel."""
    import torchaudio
    from nnAudio import features as nn_features

    cqt = nn_features.CQT2010v2(sr=config.sample_rate, hop_length=config.hop_length,
                                fmin=config.fmin, n_bins=config.n_bins,
                                bins_per_octave=config.bins_per_octave, verbose=False)
    gammatone = nn_features.Gammatonegram(sr=config.sample_rate, n_fft=config.n_fft,
                                          n_bins=config.n_bins, hop_length=config.hop_length,
                                          fmin=config.fmin, fmax=config.fmax, verbose=False)
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=config.sample_rate, n_fft=config.n_fft, win_length=config.win_length,
        hop_length=config.hop_length, f_min=config.fmin, f_max=config.fmax,
        n_mels=config.n_bins, norm=None, mel_scale="htk")

    def run() -> None:
        with torch.inference_mode():
            for wave in waves:
                cqt(wave[None]), gammatone(wave[None]), mel(wave[None])

    return run


def main() -> None:
    use_huge_pages()  # no tensor exists yet: the imports above make none (cyclelib.device)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=4, help="timed batches of 32")
    parser.add_argument("--singles", type=int, default=16, help="timed calls at batch 1")
    parser.add_argument("--references", type=int, default=8, help="cycles for librosa/nnAudio")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (the target: 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = FeatureConfig()
    module = HybridSpectrogram(config).eval()
    waves = torch.from_numpy(
        np.random.default_rng(0).standard_normal((32, CYCLE_SAMPLES), dtype=np.float32) * 0.1
    )
    rows = []
    with torch.inference_mode():
        single = cycles_per_second(lambda: module(waves[:1]), 1, args.singles)
        batched, batched_cpu_ms = _best(lambda: module(waves), 32, args.batches)
    peak_ours = peak_memory_mb()
    rows.append(("HybridSpectrogram, batch 1", single))
    rows.append(("HybridSpectrogram, batch 32", batched))
    refs = waves[: args.references]
    librosa_rate = cycles_per_second(librosa_front_end(refs.numpy(), config), len(refs), 1)
    rows.append(("librosa per cycle (cqt + mel)", librosa_rate))
    original = None
    if importlib.util.find_spec("nnAudio") is not None:
        original = cycles_per_second(original_front_end(refs, config), len(refs), 1)
        rows.append(("original: nnAudio CQT2010v2 + Gammatonegram + mel", original))

    print(f"Front end on {torch.get_num_threads()} CPU threads, 8 s cycles at {SAMPLE_RATE} Hz")
    print(f"{'front end':<52} {'cycles/s':>9} {'ms/cycle':>9}")
    for name, rate in rows:
        print(f"{name:<52} {rate:>9.1f} {1000 / rate:>9.2f}")
    if original is None:
        print(f"(nnAudio not installed: the original's front end is reported at about "
              f"{ORIGINAL_MS_PER_CYCLE:.0f} ms/cycle with 2 threads)")
    print(f"CPU time of our module at batch 32: {batched_cpu_ms:.2f} ms per cycle over all "
          f"threads (busy machine: the wall time above can be far worse than half of it)")
    print(f"all {ICBHI_CYCLES} ICBHI cycles at batch 32: {ICBHI_CYCLES / batched:.1f} s "
          f"(target < 60 s, i.e. >= 115 cycles/s)")
    print(f"peak memory after our module: {peak_ours:.0f} MB (target < 2048 MB); "
          f"process peak at the end: {peak_memory_mb():.0f} MB")
    print(json.dumps({
        "threads": torch.get_num_threads(),
        "cycles_per_s_batch1": round(single, 2),
        "cycles_per_s_batch32": round(batched, 2),
        "cpu_ms_per_cycle_batch32": round(batched_cpu_ms, 2),
        "cycles_per_s_librosa": round(librosa_rate, 2),
        "cycles_per_s_original": None if original is None else round(original, 2),
        "icbhi_seconds_batch32": round(ICBHI_CYCLES / batched, 1),
        "speedup_vs_original": round(batched * ORIGINAL_MS_PER_CYCLE / 1000, 1)
        if original is None else round(batched / original, 1),
        "peak_memory_mb": round(peak_ours, 1),
        "peak_memory_mb_end": round(peak_memory_mb(), 1),
    }))


if __name__ == "__main__":
    main()
