"""Reading ICBHI recordings and cutting fixed-length respiratory cycles (DESIGN §3, §9).

Audio is read with soundfile (16-, 24- and 32-bit PCM; torchaudio.load would need torchcodec,
DESIGN §9), mixed down to mono, converted to float32 and resampled to ``SAMPLE_RATE`` (22 kHz,
the original's rate) with torchaudio's band-limited sinc resampler using a Kaiser window with
the parameters of librosa's ``kaiser_best``. Each cycle is then cut at the target rate and fitted
to 8 s (176,000 samples): a long cycle keeps its last 8 s, a short one is tiled, never padded.

Every unreadable file (missing, empty, truncated, not a WAV) raises :class:`AudioError` naming it.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import torch
import torchaudio.functional as AF

from cyclelib.constants import CYCLE_SAMPLES, SAMPLE_RATE
from cyclelib.progress import progress_bar

RESAMPLER = dict(  # torchaudio.functional.resample settings: librosa's "kaiser_best" filter
    lowpass_filter_width=64,  # 64 zero crossings each side: a steep, clean anti-alias filter
    rolloff=0.9475,  # pass band ends at 94.75% of the lower Nyquist frequency
    resampling_method="sinc_interp_kaiser",  # Kaiser window: controllable stop-band leakage
    beta=14.769656459379492,  # Kaiser shape of kaiser_best: about 140 dB stop-band attenuation
)
_UNKNOWN_SIZE = 0xFFFFFFFF  # data-chunk size written by streaming encoders and RF64 files


class AudioError(ValueError):
    """A recording that cannot be used: missing, empty, truncated or not a WAV file."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def _riff_problem(path: Path) -> str | None:
    """Why the RIFF/WAVE container at ``path`` is unusable, or None when its header is sound.

    libsndfile silently reads a truncated file up to where the bytes stop, so the declared size
    of the ``data`` chunk is compared with the bytes actually present.
    """
    size = path.stat().st_size
    if size == 0:
        return "empty file (0 bytes)"
    with path.open("rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
            return f"not a WAV file (no RIFF/WAVE header; it starts with {head[:12]!r})"
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
            if chunk_id == b"data":
                present = size - pos - 8
                if chunk_size != _UNKNOWN_SIZE and chunk_size > present:
                    return (
                        f"truncated WAV file: its data chunk declares {chunk_size} bytes "
                        f"but only {present} are present"
                    )
                return None
            pos += 8 + chunk_size + (chunk_size & 1)  # chunks are padded to even sizes
    return "truncated or malformed WAV file: no data chunk"


def wav_info(path: str | Path) -> sf._SoundFileInfo:
    """soundfile's header info (samplerate, frames, channels, subtype) of a checked WAV file.

    Raises :class:`AudioError` naming the file when it is missing, empty, truncated, not a WAV
    file, or holds no samples.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "audio file not found")
    reason = _riff_problem(path)
    if reason is not None:
        raise AudioError(path, reason)
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError) as err:
        raise AudioError(path, f"soundfile cannot read it ({err})") from err
    if info.frames == 0:
        raise AudioError(path, "WAV file holds no audio samples")
    return info


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a WAV file as float32 mono at its native rate: ``(samples,)`` array and the rate.

    Several channels are averaged. Raises :class:`AudioError` for unusable files.
    """
    info = wav_info(path)
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as err:
        raise AudioError(path, f"soundfile cannot read it ({err})") from err
    if len(data) != info.frames:
        raise AudioError(path, f"read {len(data)} of the {info.frames} frames its header declares")
    wave = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    return np.ascontiguousarray(wave, dtype=np.float32), int(rate)


def resample(wave: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Resample a float32 ``(samples,)`` waveform with the Kaiser sinc filter of ``RESAMPLER``."""
    if orig_rate == new_rate:
        return np.asarray(wave, dtype=np.float32)
    tensor = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    return AF.resample(tensor, int(orig_rate), int(new_rate), **RESAMPLER).numpy()


def load_recording(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read a recording as float32 mono ``(samples,)`` resampled to ``sample_rate`` (DESIGN §3)."""
    wave, rate = read_wav(path)
    return resample(wave, rate, sample_rate)


def fit_length(x: np.ndarray, n: int = CYCLE_SAMPLES) -> np.ndarray:
    """Fit a ``(samples,)`` waveform to exactly ``n`` samples (DESIGN §3).

    Longer than ``n``: keep the last ``n`` samples. Shorter: repeat it end to end and cut to
    ``n`` (no zero padding). Returns a new contiguous array of the same dtype.
    """
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"fit_length expects a 1-D waveform (samples,), got shape {x.shape}")
    if len(x) == 0:
        raise ValueError("fit_length cannot fit an empty waveform")
    if n <= 0:
        raise ValueError(f"fit_length needs a positive length n, got {n}")
    if len(x) >= n:
        return x[len(x) - n :].copy()
    return np.tile(x, math.ceil(n / len(x)))[:n]


def cut_cycle(
    wave: np.ndarray, sample_rate: int, start: float, end: float, n: int = CYCLE_SAMPLES
) -> np.ndarray:
    """Cut the cycle ``start``..``end`` (seconds) from ``wave`` at ``sample_rate``; fit to ``n``.

    The sample indices are rounded; an end past the recording is clipped to its last sample.
    Returns float32 ``(n,)``.
    """
    if not 0 <= start < end:
        raise ValueError(f"a cycle needs 0 <= start < end, got start={start} end={end}")
    first, last = round(start * sample_rate), min(round(end * sample_rate), len(wave))
    if first >= last:
        raise ValueError(
            f"cycle {start:.3f}-{end:.3f} s holds no sample of the "
            f"{len(wave) / sample_rate:.3f} s recording at {sample_rate} Hz"
        )
    return fit_length(np.asarray(wave[first:last], dtype=np.float32), n)


def iter_cycle_waveforms(
    cycles: pd.DataFrame,
    data_dir: str | Path,
    sample_rate: int = SAMPLE_RATE,
    n: int = CYCLE_SAMPLES,
    progress: bool = True,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield the cycles of ``cycles`` one recording at a time (each recording is loaded once).

    ``cycles`` needs the columns ``recording``, ``start`` and ``end`` (DESIGN §3). Yields
    ``(positions, waves)``: ``positions`` (k,) int64 are the rows' positions (0..len-1, iloc
    order) and ``waves`` (k, n) float32 their fitted waveforms. A recording whose ``.wav`` is not
    in ``data_dir`` raises :class:`AudioError`: filter the rows on ``has_audio`` first.
    """
    data_dir = Path(data_dir)
    groups = cycles.groupby("recording", sort=False).indices
    starts, ends = cycles["start"].to_numpy(float), cycles["end"].to_numpy(float)
    bar = progress_bar(total=len(cycles), unit="cycle", desc="cycles", disable=not progress)
    with bar:
        for recording, rows in groups.items():
            path = data_dir / f"{recording}.wav"
            if not path.is_file():
                raise AudioError(path, f"no audio for recording {recording} (filter on has_audio)")
            wave = load_recording(path, sample_rate)
            waves = np.stack([cut_cycle(wave, sample_rate, starts[i], ends[i], n) for i in rows])
            bar.update(len(rows))
            yield np.asarray(rows, dtype=np.int64), waves


def load_cycle_waveforms(
    cycles: pd.DataFrame, data_dir: str | Path, progress: bool = True
) -> np.ndarray:
    """The cycles of ``cycles`` at ``SAMPLE_RATE``, fitted to 8 s, in row order: float32
    (len(cycles), 176000); :func:`iter_cycle_waveforms` gathered into one array."""
    waves = np.empty((len(cycles), CYCLE_SAMPLES), dtype=np.float32)
    for positions, batch in iter_cycle_waveforms(cycles, data_dir, progress=progress):
        waves[positions] = batch
    return waves
