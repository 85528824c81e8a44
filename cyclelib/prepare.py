"""What the trainer reads (DESIGN §4, §6-7): an ICBHI folder's usable cycles and their features.

- :func:`prepare_data` resolves the folder (:func:`cyclelib.data.resolve_data_dir`), keeps the
  cycles whose recording has audio and computes (or reuses) their cached hybrid spectrograms:
  a :class:`PreparedData`;
- :class:`SplitData` is one set of it (train, val or test) as the trainer and
  :func:`cyclelib.evaluation.evaluate` take it; :func:`split_data` builds it from the rows of
  :func:`cyclelib.data.protocol_splits`;
- :func:`describe_data` says what was used, for results.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cyclelib.constants import CLASS_NAMES
from cyclelib.data import cycles_with_audio, load_icbhi, resolve_data_dir
from cyclelib.feature_cache import cached_features, read_rows
from cyclelib.features import FeatureConfig
from cyclelib.gpu import to_device


@dataclass
class PreparedData:
    """An ICBHI folder's usable cycles (those with audio) and their cached features."""

    data_dir: Path
    synthetic: bool
    cycles: pd.DataFrame  # rows with audio, index 0..M-1; column ``row`` = row of ``features``
    features: np.ndarray  # (M, 3, 84, 688) float16 memmap
    recordings: int  # annotated recordings in the folder
    recordings_with_audio: int


def prepare_data(
    data_dir: str | Path | None,
    feature_config: FeatureConfig,
    progress: bool = True,
    trained_on: str | Path | None = None,
) -> PreparedData:
    """Resolve the folder (None: ``trained_on`` if it still exists, else the synthetic set), keep
    the cycles with audio and cache their features.

    Raises ValueError when no train or no test recording has audio.
    """
    folder, synthetic = resolve_data_dir(data_dir, trained_on)
    icbhi = load_icbhi(folder)
    usable = cycles_with_audio(icbhi.cycles)
    usable["row"] = np.arange(len(usable))
    with_audio = int(icbhi.recordings["has_audio"].sum())
    for split in ("train", "test"):
        if not (usable["split"] == split).any():
            raise ValueError(
                f"{folder}: no {split} recording has its audio ({with_audio} of "
                f"{len(icbhi.recordings)} recordings have a .wav): put the ICBHI .wav files "
                "next to their .txt annotations"
            )
    features = cached_features(usable, folder, feature_config, progress=progress)
    return PreparedData(folder, synthetic, usable, features, len(icbhi.recordings), with_audio)


@dataclass
class SplitData:
    """The cycles of one split and where their inputs come from.

    ``features`` (M, 3, 84, 688) float16 (usually the memmap of
    :func:`cyclelib.feature_cache.cached_features`) is shared by the splits; ``rows`` (N,) picks
    this split's cycles from it. ``waves`` (N, n) float32 are the fitted waveforms of the same
    cycles (an array, or the :class:`WaveRows` of a waveform cache: ``waves[index]`` reads
    (len(index), n)), needed only to train with waveform effects. :meth:`resident` gives the
    same split with its arrays as tensors on a GPU (then ``features`` is (N, ...), ``rows``
    0..N-1).
    """

    labels: np.ndarray  # (N,) int64 class 0..3
    features: np.ndarray | torch.Tensor  # (M, 3, 84, 688) hybrid spectrograms of all rows
    rows: np.ndarray  # (N,) int64 positions of this split's cycles in ``features``
    waves: np.ndarray | WaveRows | torch.Tensor | None = None  # (N, n) float32, only for
    #   on-the-fly augmentation

    def __len__(self) -> int:
        return len(self.labels)

    def spectrograms(self, index: np.ndarray) -> torch.Tensor:
        """(len(index), 3, 84, 688) float32 tensor of the cycles ``index`` (0..N-1), on the
        CPU, or on the GPU for a :meth:`resident` split."""
        if isinstance(self.features, torch.Tensor):
            return self.features[self._on_device(self.rows[index])].float()
        return torch.from_numpy(read_rows(self.features, self.rows[index]).astype(np.float32))

    def waveforms(self, index: np.ndarray) -> torch.Tensor:
        """(len(index), n) float32 waveforms of the cycles ``index``, where ``waves`` are."""
        if self.waves is None:
            raise ValueError("this split holds no waveforms (SplitData.waves is None)")
        if isinstance(self.waves, torch.Tensor):
            return self.waves[self._on_device(index)]
        return torch.from_numpy(np.ascontiguousarray(self.waves[index]))

    def _on_device(self, index: np.ndarray) -> torch.Tensor:
        return to_device(torch.from_numpy(np.asarray(index, dtype=np.int64)), self.features.device)

    def resident(self, device: torch.device, chunk: int = 256) -> SplitData:
        """This split with its features (float16) and waveforms (float32, if any) copied once to
        ``device``, ``chunk`` cycles at a time (host memory stays small for a memmap)."""
        everything = np.arange(len(self))
        parts = [everything[i : i + chunk] for i in range(0, len(self), chunk)]
        features = torch.cat([torch.from_numpy(read_rows(self.features, self.rows[p])).to(device)
                              for p in parts])
        waves = None if self.waves is None else torch.cat(
            [self.waveforms(p).to(device) for p in parts])
        return SplitData(self.labels, features, everything, waves)


@dataclass
class WaveRows:
    """Waveforms of some feature rows, left on disk: ``array`` (K, n) float32 (usually the memmap
    of :func:`cyclelib.feature_cache.cached_waveforms`) holds the feature rows ``rows`` (K,),
    sorted; ``positions`` (N,) picks a split's cycles from it. ``view[index]`` reads
    (len(index), n) float32 (:func:`cyclelib.feature_cache.read_rows`)."""

    array: np.ndarray  # (K, n) float32
    rows: np.ndarray  # (K,) int64 sorted feature rows of ``array``'s rows
    positions: np.ndarray | None = None  # (N,) rows of ``array`` in split order; None: all

    def __len__(self) -> int:
        return len(self.array) if self.positions is None else len(self.positions)

    def __getitem__(self, index: np.ndarray) -> np.ndarray:
        picked = np.asarray(index) if self.positions is None else self.positions[index]
        return read_rows(self.array, picked)

    def of(self, rows: np.ndarray) -> WaveRows:
        """The waveforms of feature rows ``rows`` (N,), in that order; KeyError if one is absent."""
        positions = np.searchsorted(self.rows, rows)
        found = positions < len(self.rows)
        if not found.all() or (self.rows[positions] != rows).any():
            raise KeyError("some rows have no cached waveform")
        return WaveRows(self.array, self.rows, positions)


def split_data(
    rows: pd.DataFrame, features: np.ndarray, waves: WaveRows | None = None
) -> SplitData:
    """The :class:`SplitData` of the rows of one set (with the ``row`` column of
    :class:`PreparedData`); ``waves`` (covering those rows) only to train with waveform effects."""
    index = rows["row"].to_numpy(np.int64)
    return SplitData(rows["label"].to_numpy(np.int64), features, index,
                     None if waves is None else waves.of(index))


def describe_data(data: PreparedData, splits: dict[str, pd.DataFrame]) -> dict:
    """The data description of results.json: folder, kind, and per split recordings/cycles."""
    return {
        "folder": str(data.data_dir),
        "synthetic": data.synthetic,
        "recordings": data.recordings,
        "recordings_with_audio": data.recordings_with_audio,
        "recordings_without_audio": data.recordings - data.recordings_with_audio,
        "restriction": (
            f"only the {len(data.cycles)} cycles of the {data.recordings_with_audio} recordings "
            f"with audio are used ({data.recordings - data.recordings_with_audio} of "
            f"{data.recordings} recordings lack audio)"
        ),
        "splits": {
            name: {
                "recordings": int(rows["recording"].nunique()),
                "patients": int(rows["patient"].nunique()),
                "cycles": len(rows),
                **{c: int((rows["label"] == i).sum()) for i, c in enumerate(CLASS_NAMES)},
            }
            for name, rows in splits.items()
        },
    }
