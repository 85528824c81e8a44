"""The full-size synthetic set: ICBHI 2017's exact shape, synthetic sounds (DESIGN §2-3).

``cyclelib synth DIR --like-icbhi`` writes a folder with the real database's shape, for
rehearsing the whole pipeline at full scale without the real audio: 126 patients, 920
recordings with the official split's per-recording assignment (patients 156 and 218 on both
sides), the 6,898 annotated cycles with their real start, end and class (train 4,142:
N 2,063, C 1,215, W 501, B 363; test 2,756: 1,579 / 649 / 385 / 143), each recording's device,
sample rate (4, 10, 44.1 kHz), bit depth and duration, the real diagnoses, and the official
split file's one device alias (``226_1b1_Pl_sc_Meditron`` for the file ``..._LittC2SE``).

Those facts come from a table shipped with the package, :data:`FACTS_FILE` (timings, labels and
formats read from the public annotation files; no audio), written by :func:`write_facts` from a
real ICBHI folder. Where that folder lacked a recording's audio, its format is inferred from its
device and annotation length (see :func:`_inferred_format`). The sounds are those of the teaching
set (:func:`cyclelib.data.synthetic._synthesize`); demographics are made up. Patients are the
real numbers + :data:`PATIENT_OFFSET` (301-426), so :func:`~cyclelib.data.synthetic.is_synthetic`
says SYNTHETIC wherever the folder is used. Recordings are written by a process pool; recording
``i`` draws from ``default_rng([seed, i])``, so the bytes depend on the seed only, not on the
number of workers or on the patient subset.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from cyclelib.data.icbhi import (
    DEMOGRAPHICS_FILE,
    DIAGNOSIS_FILE,
    SPLIT_FILE,
    parse_recording_name,
    read_annotation,
    read_diagnosis,
    read_split,
)
from cyclelib.data.synthetic import (
    FILENAME_FORMAT,
    _demographics,
    _Recording,
    _synthesize,
    _write_lines,
)

FACTS_FILE = Path(__file__).with_name("icbhi_facts.json.gz")
PATIENT_OFFSET = 200  # real patients 101-226 become 301-426 (synthetic numbering, >= 301)
README = (
    "SYNTHETIC data, not ICBHI 2017 recordings: written by `cyclelib synth --like-icbhi`.\n"
    "Recording names, split, cycle times and labels, formats and diagnoses follow the real\n"
    "database's public annotations (patients renumbered: real number + 200); every sound is\n"
    "generated. Results on this folder say nothing about respiratory sounds.\n"
)


@dataclass(frozen=True)
class RecordingFacts:
    """One real recording as shipped: name, official split, format, and its cycles.

    ``cycles`` holds ``(start_s, end_s, label)`` per annotated cycle, label 0..3 (DESIGN §3).
    """

    name: str
    split: str
    sample_rate: int
    subtype: str
    frames: int
    cycles: tuple[tuple[float, float, int], ...]


def _inferred_format(device: str, name: str, last_end: float) -> tuple[int, str, int]:
    """(rate, subtype, frames) of a recording whose audio is absent, from the 133 we hold:
    Litt3200 and long (> 21 s) Meditron recordings are 4 kHz 16-bit and end with their last
    cycle (the six 10 kHz recordings are all among the 133); the others are 20 s at 44.1 kHz,
    24- or 16-bit in the proportions seen for their device (chosen by a CRC of the name: fixed).
    That gives ICBHI's 90 / 6 / 824 recordings at 4 / 10 / 44.1 kHz."""
    if device == "Litt3200" or last_end > 21.0:
        return 4000, "PCM_16", round(last_end * 4000)
    sixteen_bit = {"Meditron": 13 / 30, "AKGC417L": 2 / 36, "LittC2SE": 0.0}[device]
    subtype = "PCM_16" if zlib.crc32(name.encode()) % 1000 < 1000 * sixteen_bit else "PCM_24"
    return 44100, subtype, round(max(20.0, last_end) * 44100)


def facts_from_icbhi(folder: str | Path) -> dict:
    """The shipped table's content, derived from a real ICBHI folder (all annotations, the split,
    the diagnoses; the audio where present). JSON-able: ``recordings`` (rows of
    :class:`RecordingFacts` fields, name order), ``aliases`` and ``diagnosis`` by patient."""
    folder = Path(folder)
    names = sorted(p.stem for p in folder.glob("*.txt") if _is_recording(p.stem))
    prefixes = {parse_recording_name(n).prefix: n for n in names}
    splits, aliases, problems = read_split(folder / SPLIT_FILE, prefixes)
    diagnosis, found = read_diagnosis(folder / DIAGNOSIS_FILE)
    if problems or found:
        raise ValueError(f"{folder}: not a clean ICBHI folder: {(problems + found)[:3]}")
    rows = []
    for name in names:
        table, found = read_annotation(folder / f"{name}.txt")
        last_end = float(table[:, 1].max())
        wav = folder / f"{name}.wav"
        if wav.is_file():
            info = sf.info(str(wav))
            rate = info.samplerate
            fmt = (rate, info.subtype, max(info.frames, round(last_end * rate)))
        else:
            fmt = _inferred_format(parse_recording_name(name).device, name, last_end)
        cycles = [[float(s), float(e), int(c) + 2 * int(w)] for s, e, c, w in table]
        rows.append([name, splits[name], *fmt, cycles])
    by_patient = zip(diagnosis["patient"], diagnosis["diagnosis"], strict=True)
    return {"recordings": rows, "aliases": aliases, "diagnosis": {str(p): d for p, d in by_patient}}


def _is_recording(stem: str) -> bool:
    try:
        parse_recording_name(stem)
    except ValueError:
        return False
    return True


def write_facts(folder: str | Path, path: str | Path = FACTS_FILE) -> Path:
    """Write :func:`facts_from_icbhi` of ``folder`` as gzipped JSON (byte-stable: no mtime)."""
    text = json.dumps(facts_from_icbhi(folder), separators=(",", ":"), sort_keys=True)
    Path(path).write_bytes(gzip.compress(text.encode(), mtime=0))
    return Path(path)


def load_facts(path: str | Path = FACTS_FILE) -> tuple[list[RecordingFacts], dict, dict]:
    """(recordings in name order, split-file aliases, {patient: diagnosis}) of the table."""
    data = json.loads(gzip.decompress(Path(path).read_bytes()))
    recordings = [RecordingFacts(n, s, r, t, f, tuple(tuple(c) for c in cycles))
                  for n, s, r, t, f, cycles in data["recordings"]]
    return recordings, data["aliases"], {int(p): d for p, d in data["diagnosis"].items()}


def synthetic_name(real: str) -> str:
    """A real recording name with its patient renumbered: ``101_1b1_Al_sc_Meditron`` ->
    ``301_1b1_Al_sc_Meditron``."""
    patient, rest = real.split("_", 1)
    return f"{int(patient) + PATIENT_OFFSET}_{rest}"


def _write_recording(job: tuple[int, int, RecordingFacts, Path]) -> None:
    """Synthesise and write one recording's .wav and .txt (its rng: ``[seed, index]``)."""
    seed, index, facts, out = job
    name = synthetic_name(facts.name)
    rec = _Recording(name, facts.split, parse_recording_name(name).device, facts.sample_rate,
                     facts.subtype, facts.frames / facts.sample_rate,
                     [(s, e) for s, e, _ in facts.cycles], np.zeros(4))
    labels = [label for _, _, label in facts.cycles]
    audio = _synthesize(rec, labels, np.random.default_rng([seed, index]))
    sf.write(out / f"{name}.wav", audio, facts.sample_rate, subtype=facts.subtype)
    rows = [f"{s}\t{e}\t{label & 1}\t{label >> 1}" for s, e, label in facts.cycles]
    _write_lines(out / f"{name}.txt", rows, "\n")


def make_full_synthetic_icbhi(
    out_dir: str | Path,
    seed: int = 0,
    patients: list[int] | None = None,
    workers: int | None = None,
    facts_file: str | Path = FACTS_FILE,
) -> Path:
    """Write the full-size synthetic set (ICBHI layout) into ``out_dir`` (new or empty).

    ``patients``: only these real patient numbers (101-226), e.g. for a quick test; None: all
    126. ``workers``: processes (None: every CPU). Same seed, same bytes for each recording,
    whatever ``workers`` and ``patients``. About 2.1 GB for the whole set.
    """
    out = Path(out_dir).expanduser()
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty: give a new or empty folder for the synthetic set")
    recordings, aliases, diagnosis = load_facts(facts_file)
    wanted = set(diagnosis) if patients is None else {int(p) for p in patients}
    if unknown := sorted(wanted - set(diagnosis)):
        raise ValueError(f"unknown ICBHI patient(s) {unknown}: real numbers are 101-226")
    chosen = [(i, r) for i, r in enumerate(recordings)
              if parse_recording_name(r.name).patient in wanted]
    out.mkdir(parents=True, exist_ok=True)
    longest_first = sorted(chosen, key=lambda c: -c[1].frames / c[1].sample_rate)
    jobs = [(seed, i, r, out) for i, r in longest_first]
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    if workers == 1:
        list(map(_write_recording, jobs))
    else:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_recording, jobs, chunksize=4))
    split_names = {r: a for a, r in aliases.items()}  # the split file keeps the old device name
    _write_lines(out / SPLIT_FILE, [f"{synthetic_name(split_names.get(r.name, r.name))}\t{r.split}"
                                    for _, r in chosen], "\r\n")
    kept = sorted(wanted)
    _write_lines(out / DIAGNOSIS_FILE,
                 [f"{p + PATIENT_OFFSET}\t{diagnosis[p]}" for p in kept], "\n")
    _write_lines(out / DEMOGRAPHICS_FILE, [
        _demographics(p + PATIENT_OFFSET, diagnosis[p], np.random.default_rng([seed, 10**6 + p]))
        for p in kept], "\r\n")
    (out / "filename_format.txt").write_text(FILENAME_FORMAT)
    (out / "README_SYNTHETIC.txt").write_text(README)
    return out


def disk_usage(folder: str | Path) -> int:
    """Bytes the files directly in ``folder`` occupy on disk (allocated blocks)."""
    return sum(e.stat().st_blocks * 512 for e in os.scandir(folder) if e.is_file())
