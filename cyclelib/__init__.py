"""cyclelib: CycleGuardian (arXiv 2502.00734) reproduced and taught on ICBHI 2017.

One module per concept, following ``DESIGN.md`` §1 (the README's module map lists them all):

    data (§2-3) ─► features, feature_cache (§4) ─► model, layers (§5) ─► losses, augment (§6)
    ─► prepare, train, evaluation, checkpoint (§6-7) ─► reproduction, results (§7)
    ─► export (§8); metrics (§7), device, paths, constants; viz (plots, widgets); cli

The names below are the public API, chapter by chapter: the notebooks import from here, from
the ``cyclelib.export`` and ``cyclelib.viz`` subpackages, and nowhere else. Each name is imported
on first use (PEP 562, as librosa does), so ``import cyclelib`` loads no torch and changes no
setting.
"""

from importlib import import_module

from cyclelib.constants import CLASS_NAMES, CYCLE_SAMPLES, CYCLE_SECONDS, MAP_NAMES, SAMPLE_RATE

__version__ = "0.1.0"

_API = {  # module -> the public names it defines, in chapter order
    "cyclelib.data": (  # 1. the data (DESIGN §2-3)
        "cut_cycle", "cycles_with_audio", "load_cycle_waveforms", "load_recording",
        "paper_protocol_split", "protocol_splits", "resolve_data_dir", "sample_cycles",
        "scan_icbhi",
    ),
    "cyclelib.features": ("FeatureConfig", "HybridSpectrogram", "group_frames"),  # 2. (§4)
    "cyclelib.feature_cache": ("cached_features",),
    "cyclelib.model": ("CycleGuardian", "ModelConfig"),  # 3. the network (§5)
    "cyclelib.model_size": ("count_flops",),
    "cyclelib.losses": ("CycleGuardianObjective", "LossConfig"),  # and its objective (§6)
    "cyclelib.train": ("TrainConfig",),  # 4. training and the honest protocol (§6-7)
    "cyclelib.prepare": ("prepare_data", "split_data"),
    "cyclelib.checkpoint": ("load_model",),
    "cyclelib.evaluation": ("evaluate_checkpoint", "predict"),
    "cyclelib.reproduction": ("reproduce",),
    "cyclelib.results": ("read_history", "results_markdown"),
}  # fmt: skip
_HOME = {name: module for module, names in _API.items() for name in names}

__all__ = ["CLASS_NAMES", "CYCLE_SAMPLES", "CYCLE_SECONDS", "MAP_NAMES", "SAMPLE_RATE",
           "__version__", *_HOME]


def __getattr__(name: str) -> object:
    """Import a public name from its module on first use; later lookups find it here."""
    if name not in _HOME:
        raise AttributeError(f"module 'cyclelib' has no attribute {name!r}")
    value = getattr(import_module(_HOME[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})
