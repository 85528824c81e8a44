"""The data layer (DESIGN §2-3): ICBHI folders, their recordings and cycles, the protocol splits.

    folder      the entry point: which folder (given, a checkpoint's, or the synthetic set),
                its scan (recordings, cycles, problems), the cycles with audio, samples of them
    icbhi       the ICBHI 2017 files: recording names, annotation/split/metadata readers
    audio       reading a recording, resampling to 22 kHz, cutting and fitting 8 s cycles
    splits      the validation split of whole patients, the original's leaky split, by protocol
    synthetic   the synthetic teaching set, written in the ICBHI layout
    download    the official files, fetched with pooch

Chapter 1 (notebook ``01_data_exploration``) uses the names re-exported here.
"""

from cyclelib.data.audio import (
    AudioError,
    cut_cycle,
    fit_length,
    iter_cycle_waveforms,
    load_cycle_waveforms,
    load_recording,
    resample,
)
from cyclelib.data.download import download_icbhi
from cyclelib.data.folder import (
    ICBHI,
    check_data,
    cycles_with_audio,
    load_icbhi,
    resolve_data_dir,
    sample_cycles,
    scan_icbhi,
)
from cyclelib.data.icbhi import DataError, Problem, parse_recording_name
from cyclelib.data.splits import paper_protocol_split, protocol_splits, validation_split
from cyclelib.data.synthetic import make_synthetic_icbhi, synthetic_dir

__all__ = [
    "ICBHI", "AudioError", "DataError", "Problem", "check_data", "cut_cycle",
    "cycles_with_audio", "download_icbhi", "fit_length", "iter_cycle_waveforms",
    "load_cycle_waveforms", "load_icbhi", "load_recording", "make_synthetic_icbhi",
    "paper_protocol_split", "parse_recording_name", "protocol_splits", "resample",
    "resolve_data_dir", "sample_cycles", "scan_icbhi", "synthetic_dir", "validation_split",
]  # fmt: skip
