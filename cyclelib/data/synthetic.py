"""The synthetic teaching set: an ICBHI-format folder (DESIGN §2-3) made from code, not recorded.

Same layout as the official download: ``{patient}_{index}_{location}_{mode}_{device}.wav`` +
``.txt`` (``start end crackle wheeze``, tab separated), the split file (CRLF), diagnoses,
demographics (``NA`` fields) and a stray ``filename_format.txt``. Patients start at 301 (real
ones are 101-226). Sounds follow the annotators' descriptions: breath is band-limited noise (most
energy < 1 kHz) under an inspiration/expiration envelope, with heart sounds; a crackle is a short
(< 20 ms) damped transient far above the breath, a few per cycle; a wheeze is a sustained tone
(fundamental 100-1000 Hz, harmonics, slight drift) of several hundred ms; "both" has both.
Devices keep their ICBHI formats (44.1 kHz 16/24/32-bit, 10 and 4 kHz 16-bit) and colouring.
Each split side has ICBHI's class balance, with a per-patient tendency from the diagnosis; the
split is by patient (about 60/40) except one patient on both sides, like 156 and 218 (DESIGN §7).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import butter, resample_poly, sosfilt
from scipy.signal.windows import tukey

from cyclelib.data.icbhi import (
    DEMOGRAPHICS_FILE,
    DIAGNOSIS_FILE,
    LOCATIONS,
    SPLIT_FILE,
    parse_recording_name,
)
from cyclelib.paths import cache_dir

VERSION = "v1"  # bump when the generator changes, so cached sets are rebuilt
FIRST_PATIENT = 301  # real ICBHI patients are 101-226
CLASS_FRACTIONS = (0.45, 0.27, 0.16, 0.12)  # normal, crackle, wheeze, both: as ICBHI's 6,898 cycles
TEST_FRACTION = 0.4  # of patients, like the official 381/920 recordings
# device: ((sample rate, soundfile subtype) choices, low-pass colouring in Hz, acquisition mode)
DEVICES = {
    "AKGC417L": (((44100, "PCM_24"),), 4000.0, "mc"),  # microphone: widest band, multichannel
    "Meditron": (((44100, "PCM_16"), (44100, "PCM_24")), 2000.0, "sc"),
    "LittC2SE": (((4000, "PCM_16"),), 1500.0, "sc"),  # 4 kHz: Nyquist 2 kHz
    "Litt3200": (((4000, "PCM_16"), (10000, "PCM_16")), 1800.0, "sc"),
}
# diagnosis: (share of patients, affinity for normal, crackle, wheeze, both)
DIAGNOSES = {
    "COPD": (0.30, (0.30, 0.35, 0.15, 0.20)),
    "Healthy": (0.20, (0.85, 0.07, 0.05, 0.03)),
    "URTI": (0.15, (0.70, 0.15, 0.10, 0.05)),
    "Asthma": (0.10, (0.40, 0.05, 0.45, 0.10)),
    "Pneumonia": (0.10, (0.35, 0.50, 0.05, 0.10)),
    "Bronchiectasis": (0.08, (0.30, 0.50, 0.10, 0.10)),
    "Bronchiolitis": (0.07, (0.30, 0.15, 0.35, 0.20)),  # children
}
FILENAME_FORMAT = (  # like the official archive's stray file, which is not an annotation
    "Elements contained in the filenames:\nPatient number (301,302,...)\nRecording index\n"
    "Chest location (Tc, Al, Ar, Pl, Pr, Ll, Lr)\nAcquisition mode (sc, mc)\n"
    "Recording equipment (AKGC417L, LittC2SE, Litt3200, Meditron)\n"
)


@dataclass
class _Recording:
    """One planned recording: its name, split, format and cycles (start, end in s)."""

    name: str
    split: str
    device: str
    sample_rate: int
    subtype: str
    duration: float
    cycles: list[tuple[float, float]]
    affinity: np.ndarray  # (4,) class affinity of this recording's cycles


def breath_noise(n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) float64 unit-RMS breath noise: white noise band-passed to about 80-900 Hz."""
    high = rng.uniform(500.0, 900.0)
    sos = butter(2, [80.0, min(high, 0.45 * sample_rate)], "bandpass", fs=sample_rate, output="sos")
    x = sosfilt(sos, rng.standard_normal(n))
    return x / np.sqrt(np.mean(x**2))


def breath_envelope(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) envelope of one cycle: a strong inspiration hump, then a weaker expiration hump."""
    split = int(n * rng.uniform(0.35, 0.45))
    envelope = np.full(n, 0.15)
    envelope[:split] += np.sin(np.linspace(0.0, np.pi, split)) ** 2
    envelope[split:] += rng.uniform(0.5, 0.8) * np.sin(np.linspace(0.0, np.pi, n - split)) ** 2
    return envelope


def crackle(sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """One crackle: a damped oscillation of 4-15 ms (fine to coarse), peak 1, random sign."""
    n = max(int(rng.uniform(0.004, 0.015) * sample_rate), 8)
    t = np.arange(n) / sample_rate
    freq = rng.uniform(150.0, min(1000.0, 0.3 * sample_rate))
    x = np.sin(2 * np.pi * freq * t) * np.exp(-5.0 * t / t[-1])
    return rng.choice((-1.0, 1.0)) * x / np.abs(x).max()


def wheeze(sample_rate: int, duration: float, rng: np.random.Generator) -> np.ndarray:
    """A wheeze of ``duration`` s, peak 1: fundamental 150-800 Hz drifting a few %, harmonics
    below 0.45 x the sample rate (4 kHz recordings: Nyquist 2 kHz), 40 ms fades."""
    n = int(duration * sample_rate)
    t = np.arange(n) / sample_rate
    f0 = rng.uniform(150.0, 800.0)
    drift = rng.uniform(0.02, 0.05) * np.sin(2 * np.pi * (rng.uniform(0.5, 3.0) * t + rng.random()))
    phase = 2 * np.pi * np.cumsum(f0 * (1.0 + drift)) / sample_rate
    harmonics = [k for k in (1, 2, 3) if k * f0 * 1.06 < 0.45 * sample_rate]
    x = sum(np.sin(k * phase) / k**1.5 for k in harmonics) * tukey(n, min(0.08 / duration, 1.0))
    return x / np.abs(x).max()


def heart_sounds(n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) heart sounds S1/S2: 80 ms damped 40-60 Hz thumps at 60-100 beats per minute."""
    out = np.zeros(n)
    thump_n = int(0.08 * sample_rate)
    t = np.arange(thump_n) / sample_rate
    thump = np.sin(2 * np.pi * rng.uniform(40.0, 60.0) * t) * np.exp(-t / 0.02)
    period = 60.0 / rng.uniform(60.0, 100.0)
    for beat in np.arange(rng.uniform(0, period), n / sample_rate - 0.5 * period, period):
        for offset, gain in ((0.0, 1.0), (0.3 * period, 0.7)):  # S1 then a softer S2
            i = int((beat + offset) * sample_rate)
            out[i : i + thump_n] += gain * thump
    return out


def _synthesize(rec: _Recording, labels: list[int], rng: np.random.Generator) -> np.ndarray:
    """(samples,) float64 audio of a planned recording in [-1, 1]; ``labels`` per cycle (0..3).

    44.1 kHz audio is made at 11,025 Hz (every device low-passes below 4 kHz), then upsampled."""
    up = 4 if rec.sample_rate == 44100 else 1
    sr = rec.sample_rate // up
    n = round(rec.duration * sr)
    envelope, events = np.full(n, 0.15), np.zeros(n)
    for (start, end), label in zip(rec.cycles, labels, strict=True):
        i, j = round(start * sr), round(end * sr)
        envelope[i:j] = breath_envelope(j - i, rng)
        for _ in range(rng.integers(3, 9) if label in (1, 3) else 0):
            c = rng.uniform(8.0, 20.0) * crackle(sr, rng)
            k = i + int(rng.uniform(0.03, 0.9) * (j - i))  # >= 150 ms before the cycle ends
            events[k : k + len(c)] += c
        if label in (2, 3):
            duration = min(rng.uniform(0.25, 0.8), 0.6 * (end - start))
            w = rng.uniform(1.5, 3.5) * wheeze(sr, duration, rng)
            k = i + int(rng.uniform(0.05, 0.95 - duration / (end - start)) * (j - i))
            events[k : k + len(w)] += w
    x = breath_noise(n, sr, rng) * envelope + events
    x += rng.uniform(0.5, 1.5) * heart_sounds(n, sr, rng)
    low_pass = min(DEVICES[rec.device][1], 0.45 * sr)  # the device's colouring
    x = sosfilt(butter(4, low_pass, "lowpass", fs=sr, output="sos"), x)
    x = resample_poly(x, up, 1) if up > 1 else x
    return x * rng.uniform(0.3, 0.8) / np.abs(x).max()


def _plan(rng: np.random.Generator, patients: int) -> tuple[list[_Recording], dict[int, str]]:
    """Patients, recordings, formats, cycle times and the per-patient split, before any sound."""
    names = list(DIAGNOSES)
    shares = np.array([DIAGNOSES[d][0] for d in names])
    diagnosis = {FIRST_PATIENT + p: str(rng.choice(names, p=shares / shares.sum()))
                 for p in range(patients)}
    devices = [list(DEVICES)[p % len(DEVICES)] for p in range(patients)]
    rng.shuffle(devices)
    order = rng.permutation(patients)
    test = set(order[: round(TEST_FRACTION * patients)].tolist())
    crossing = int(order[-1])  # a train patient whose later recordings are in test (cf. 156/218)
    recordings = []
    for p in range(patients):
        patient, device = FIRST_PATIENT + p, devices[p]
        formats, _, mode = DEVICES[device]
        n_rec = 3 if p == crossing else int(rng.integers(1, 4))
        locations = rng.choice(LOCATIONS, size=n_rec, replace=False)
        tendency = 8.0 * np.array(DIAGNOSES[diagnosis[patient]][1])
        for r in range(n_rec):
            index = "1b1" if mode == "mc" else f"{r + 1}{'b' if rng.random() < 0.8 else 'p'}1"
            split = "test" if p in test or (p == crossing and r > 0) else "train"
            sample_rate, subtype = formats[rng.integers(len(formats))]
            cycles, duration = _cycle_times(rng)
            recordings.append(_Recording(
                f"{patient}_{index}_{locations[r]}_{mode}_{device}", split, device, sample_rate,
                subtype, duration, cycles, rng.dirichlet(tendency) + 1e-3,
            ))
    next(r for r in recordings if r.sample_rate == 44100).subtype = "PCM_32"  # as 101_1b1_Al
    return recordings, diagnosis


def _cycle_times(rng: np.random.Generator) -> tuple[list[tuple[float, float]], float]:
    """Consecutive cycles of 1.5-6 s (mean 2.6 s, as ICBHI) and the recording length (15-30 s)."""
    t, stop, cycles = round(rng.uniform(0.0, 0.5), 3), rng.uniform(15.0, 23.5), []
    while t < stop:  # the last cycle ends before stop + 6 s <= 29.5 s
        end = round(t + 1.5 + 4.5 * rng.beta(2.0, 6.0), 3)
        cycles.append((t, end))
        t = end
    return cycles, round(t + rng.uniform(0.05, 0.5), 3)


def _assign_labels(recordings: list[_Recording], rng: np.random.Generator) -> list[list[int]]:
    """Cycle labels: exact ICBHI class fractions on each side of the split, drawn by affinity."""
    labels = [[0] * len(r.cycles) for r in recordings]
    for split in ("train", "test"):
        slots = [(a, b) for a, r in enumerate(recordings) if r.split == split
                 for b in range(len(r.cycles))]
        free = np.ones(len(slots), bool)
        for label in (3, 2, 1):  # rarest first; what is left stays normal
            pool = np.flatnonzero(free)
            weight = np.array([recordings[slots[i][0]].affinity[label] for i in pool])
            count = round(CLASS_FRACTIONS[label] * len(slots))
            for i in rng.choice(pool, size=count, replace=False, p=weight / weight.sum()):
                free[i] = False
                labels[slots[i][0]][slots[i][1]] = label
    return labels


def make_synthetic_icbhi(out_dir: str | Path, seed: int = 0, patients: int = 30) -> Path:
    """Write the synthetic teaching set in the ICBHI layout into ``out_dir`` (new or empty).

    The same seed and patient count give byte-identical files. The default (30 patients) has
    about 60 recordings and 400-600 cycles and takes a few seconds."""
    out = Path(out_dir).expanduser()
    if patients < 3:
        raise ValueError(f"patients must be >= 3 (train, test, one on both sides), got {patients}")
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty: give a new or empty folder for the synthetic set")
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    recordings, diagnosis = _plan(rng, patients)
    for rec, labels in zip(recordings, _assign_labels(recordings, rng), strict=True):
        audio = _synthesize(rec, labels, rng)
        sf.write(out / f"{rec.name}.wav", audio, rec.sample_rate, subtype=rec.subtype)
        cycles = zip(rec.cycles, labels, strict=True)
        rows = [f"{s:.3f}\t{e:.3f}\t{lab & 1}\t{lab >> 1}" for (s, e), lab in cycles]
        _write_lines(out / f"{rec.name}.txt", rows, "\n")
    _write_lines(out / SPLIT_FILE, [f"{r.name}\t{r.split}" for r in recordings], "\r\n")
    _write_lines(out / DIAGNOSIS_FILE,
                 [f"{p}\t{d}" for p, d in diagnosis.items()], "\n")
    _write_lines(out / DEMOGRAPHICS_FILE,
                 [_demographics(p, d, rng) for p, d in diagnosis.items()], "\r\n")
    (out / "filename_format.txt").write_text(FILENAME_FORMAT)
    return out


def _demographics(patient: int, diagnosis: str, rng: np.random.Generator) -> str:
    """One demographics line: age, sex, then BMI for adults or weight/height for children."""
    sex = "MF"[rng.integers(2)]
    if diagnosis == "Bronchiolitis":
        age = round(rng.uniform(0.5, 3.0), 2)
        return f"{patient}\t{age}\t{sex}\tNA\t{round(8 + 4 * age, 1)}\t{round(70 + 12 * age)}"
    age, bmi = int(rng.integers(20, 86)), round(rng.uniform(18.0, 35.0), 2)
    return f"{patient}\t{age}\t{sex}\t{bmi}\tNA\tNA"


def _write_lines(path: Path, lines: list[str], newline: str) -> None:
    """Write ``lines`` each ended by ``newline`` (bytes exactly: CRLF stays CRLF on every OS)."""
    path.write_bytes("".join(line + newline for line in lines).encode("ascii"))


def synthetic_dir(seed: int = 0) -> Path:
    """The default set for ``seed``, built once into the cache (in a temporary sibling folder,
    then renamed: a half-written set is never used) and reused afterwards."""
    root = cache_dir("synthetic")
    final = root / f"seed{seed}-{VERSION}"
    if final.is_dir():
        return final
    tmp = Path(tempfile.mkdtemp(prefix=f".seed{seed}-{VERSION}-", dir=root))
    try:
        make_synthetic_icbhi(tmp, seed=seed)
        os.rename(tmp, final)
    except OSError:
        if not final.is_dir():  # not a lost race with another process: a real failure
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def is_synthetic(folder: str | Path) -> bool:
    """Whether ``folder`` holds a synthetic set: every annotated recording's patient is numbered
    from :data:`FIRST_PATIENT` (real ICBHI patients are 101-226)."""
    patients = set()
    for path in Path(folder).glob("*.txt"):
        with contextlib.suppress(ValueError):  # not a recording's annotation file
            patients.add(parse_recording_name(path.stem).patient)
    return bool(patients) and min(patients) >= FIRST_PATIENT
