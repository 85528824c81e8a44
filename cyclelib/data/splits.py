"""Cycles as a torch Dataset, and the splits of the evaluation protocol (DESIGN §3, §7).

- :class:`CycleDataset`: one fitted 8 s waveform and its label per respiratory cycle.
- :func:`validation_split`: a seeded validation set of *whole* train patients (the honest
  protocol of DESIGN §7: model selection never looks at test data).
- :func:`paper_protocol_split`: the original's leaky split, kept only to reproduce its numbers.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from cyclelib.audio import AudioError, cut_cycle, load_recording
from cyclelib.constants import CYCLE_SAMPLES, SAMPLE_RATE


class CycleDataset(Dataset):
    """Respiratory cycles of ``cycles`` (rows of ``ICBHI.cycles``) read from ``data_dir``.

    Item ``i`` is ``(waveform, label)``: torch.float32 ``(n,)`` at ``sample_rate`` (DESIGN §3)
    and the int class 0..3. The last ``cache_size`` resampled recordings are kept in memory, so
    consecutive cycles of one recording load it once. Every recording must have its ``.wav`` in
    ``data_dir``: filter the rows on ``has_audio`` first (checked here, naming what is missing).
    """

    def __init__(
        self,
        cycles: pd.DataFrame,
        data_dir: str | Path,
        sample_rate: int = SAMPLE_RATE,
        n: int = CYCLE_SAMPLES,
        cache_size: int = 4,  # a few recordings (a 20 s one is ~1.8 MB at 22 kHz) suffice
    ) -> None:
        missing_columns = {"recording", "start", "end", "label"} - set(cycles.columns)
        if missing_columns:
            raise ValueError(f"cycles lacks the column(s) {sorted(missing_columns)}")
        self.data_dir = Path(data_dir)
        self.recordings = cycles["recording"].to_numpy(str)
        self.starts = cycles["start"].to_numpy(np.float64)
        self.ends = cycles["end"].to_numpy(np.float64)
        self.labels = cycles["label"].to_numpy(np.int64)
        self.sample_rate, self.n, self.cache_size = sample_rate, n, cache_size
        absent = [r for r in dict.fromkeys(self.recordings) if not self._path(r).is_file()]
        if absent:
            raise AudioError(
                self._path(absent[0]),
                f"no audio for {len(absent)} recording(s) of these cycles, e.g. {absent[:3]} "
                "(filter the cycles on has_audio)",
            )
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def _path(self, recording: str) -> Path:
        return self.data_dir / f"{recording}.wav"

    def _recording(self, recording: str) -> np.ndarray:
        """The resampled recording, from the LRU cache when it is there."""
        if recording in self._cache:
            self._cache.move_to_end(recording)
        else:
            self._cache[recording] = load_recording(self._path(recording), self.sample_rate)
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return self._cache[recording]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        wave = self._recording(self.recordings[i])
        cycle = cut_cycle(wave, self.sample_rate, self.starts[i], self.ends[i], self.n)
        return torch.from_numpy(cycle), int(self.labels[i])


def validation_split(cycles: pd.DataFrame, fraction: float = 0.2, seed: int = 0) -> pd.DataFrame:
    """A copy of ``cycles`` with the rows of a seeded set of train patients set to split "val".

    Whole patients move, never single recordings (DESIGN §7). Candidates are the patients whose
    rows (among those passed) are all "train": patients with test recordings too, such as 156
    and 218, never go to validation. ``round(fraction * candidates)`` patients move (at least
    one, and never all of them). Same rows and seed, same split.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must lie strictly between 0 and 1, got {fraction}")
    out = cycles.copy()
    is_train = out["split"] == "train"
    mixed = set(out.loc[~is_train, "patient"])
    candidates = np.array(sorted(set(out.loc[is_train, "patient"]) - mixed), dtype=np.int64)
    if len(candidates) < 2:
        raise ValueError(
            f"validation_split needs at least 2 train-only patients, found {len(candidates)}"
        )
    count = min(max(round(fraction * len(candidates)), 1), len(candidates) - 1)
    chosen = np.random.default_rng(seed).choice(candidates, size=count, replace=False)
    out.loc[is_train & out["patient"].isin(chosen), "split"] = "val"
    return out


def paper_protocol_split(cycles: pd.DataFrame) -> pd.DataFrame:
    """The original's leaky split, for comparison only (DESIGN §7, error 1).

    Train is every row of any patient with a train recording, so the test recordings of
    patients who have both (156 and 218) are trained on as well; test is the official test.
    Pass the official split (no "val" rows). Returns train rows (split "train") then test rows
    (split "test"), index reset: the leaked rows appear twice.
    """
    train_patients = set(cycles.loc[cycles["split"] == "train", "patient"])
    train = cycles[cycles["patient"].isin(train_patients)].assign(split="train")
    test = cycles[cycles["split"] == "test"]
    return pd.concat([train, test], ignore_index=True)
