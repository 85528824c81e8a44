"""``cyclelib reproduce``: a configuration trained under a protocol, once per seed (DESIGN §7).

- official protocol (default): the official per-recording split; a validation set of whole
  train patients (:func:`cyclelib.data.validation_split`, seeded by the run's seed); the
  checkpoint with the best validation Score is kept; test Sp/Se/Score/accuracy are reported at
  that checkpoint and at the last epoch; several seeds give mean ± std.
- ``protocol="paper"``: the original's numbers, for comparison only: its leaky per-patient split
  (:func:`cyclelib.data.paper_protocol_split`) and the epoch with the best TEST accuracy.
  Its files are ``results_PAPER_PROTOCOL.json/.md`` and their headers say why not to trust them.

Only cycles whose recording has audio are used (the development copy of ICBHI has audio for 133
of 920 recordings); the results say exactly how many cycles and recordings that leaves. The
data come from :func:`cyclelib.prepare.prepare_data`, the table from :mod:`cyclelib.results`.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cyclelib.checkpoint import load_model, prepare_run_dir
from cyclelib.data import protocol_splits
from cyclelib.device import resolve_device
from cyclelib.evaluation import evaluate
from cyclelib.feature_cache import cached_waveforms
from cyclelib.features import FeatureConfig
from cyclelib.metrics import headline
from cyclelib.model import ModelConfig
from cyclelib.prepare import PreparedData, WaveRows, describe_data, prepare_data, split_data
from cyclelib.results import aggregate, json_safe, results_markdown
from cyclelib.train import TrainConfig, train

CONFIGS = {  # name -> (network, training recipe)
    "faithful": (ModelConfig.faithful, TrainConfig.faithful),
    "small": (ModelConfig.small, TrainConfig.quick),
}
PROTOCOLS = {  # name -> (sets evaluated each epoch, selection (set, metric), file suffix)
    "official": (("val",), ("val", "score"), ""),
    "paper": (("test",), ("test", "acc"), "_PAPER_PROTOCOL"),
}
WALL_FILE = "wall_time.json"  # in the results folder and in each seed_N: seconds per segment
PAPER_WARNING = (
    "PAPER PROTOCOL, NOT A VALID RESULT: the original's leaky split (every recording of a patient "
    "with a train recording is trained on, so test cycles of patients on both sides are seen in "
    "training) and the epoch chosen by the best TEST accuracy. Shown only to measure how much "
    "these two errors inflate the figures (DESIGN §7)."
)


class _WallClock:
    """Wall time of a folder's work summed over its *segments* (DESIGN §7): each invocation that
    worked in it, so a run killed and resumed counts every piece, not only the last one. The
    current segment's seconds are rewritten to ``wall_time.json`` after every epoch's checkpoint:
    a killed segment keeps its time up to its last checkpoint (what came after was lost work)."""

    def __init__(self, folder: Path, resume: bool) -> None:
        self.path = folder / WALL_FILE
        earlier = json.loads(self.path.read_text())["segments"] if (
            resume and self.path.is_file()) else []
        self.segments = [*earlier, 0.0]
        self.began = time.perf_counter()

    def tick(self, *_: object) -> None:
        """Record the current segment's seconds so far (an ``on_epoch_end`` callback too)."""
        self.segments[-1] = time.perf_counter() - self.began
        if self.path.parent.is_dir():
            self.path.write_text(json.dumps({"segments": self.segments}))

    def summary(self) -> dict:
        """``wall_seconds`` (all segments), ``resumes`` (segments after the first), and each."""
        self.tick()
        return {"wall_seconds": sum(self.segments), "resumes": len(self.segments) - 1,
                "segment_seconds": list(self.segments)}


@dataclass
class _Experiment:
    """What the runs of every seed share: configs, protocol, data, device, output folder."""

    config: str
    model_config: ModelConfig
    recipe: TrainConfig
    protocol: str
    data: PreparedData
    out: Path
    device: torch.device
    resume: bool
    progress: bool
    clock: _WallClock | None  # the invocation's, ticked after every epoch (not in packed seeds)
    waves: WaveRows | None  # training waveforms (cached on disk), if features are on the fly


def check_choices(config: str, protocol: str = "official") -> None:
    """Refuse an unknown configuration or protocol name at once, with the valid names."""
    if config not in CONFIGS:
        raise ValueError(f"unknown config {config!r}: choose one of {', '.join(CONFIGS)}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")


def reproduce(
    data_dir: str | Path | None = None,
    config: str = "small",
    epochs: int | None = None,
    seeds: tuple[int, ...] | list[int] = (0,),
    device: str = "auto",
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    protocol: str = "official",
    progress: bool = True,
    train_changes: dict | None = None,
    jobs: int = 1,
) -> dict:
    """Train ``config`` once per seed under ``protocol`` and write the results (DESIGN §7).

    Writes ``out/results{suffix}.json`` and ``.md`` (suffix ``_PAPER_PROTOCOL`` for the paper
    protocol) and one run folder per seed (``seed_N``: log, ``best.pt``, ``last.pt``). ``out``
    defaults to ``runs/{config}`` (``runs/{config}_PAPER_PROTOCOL``). ``train_changes`` overrides
    fields of the training recipe (e.g. ``{"loss": LossConfig(...)}`` for an ablation).
    ``jobs`` > 1 trains that many seeds at once, each in its own process (on one GPU, the
    seeds then share it: a step of one fills the gaps of another); the figures are each seed's
    own, as when run one after the other.
    Returns the content of results.json, plus ``out``. ``wall_seconds`` there (and in each run)
    is summed over every segment of a resumed run, and ``resumes`` counts the resumptions.
    (Huge-page CPU memory, which the
    ``cyclelib reproduce`` command turns on: :mod:`cyclelib.device`.)
    """
    check_choices(config, protocol)
    run_device = resolve_device(device)
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and at least one, got {seeds}")
    if epochs is not None and epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    model_factory, train_factory = CONFIGS[config]
    recipe = train_factory(device=device, **(train_changes or {}))
    recipe = recipe if epochs is None else replace(recipe, epochs=epochs)
    suffix = PROTOCOLS[protocol][2]
    out = prepare_run_dir(out or Path("runs") / f"{config}{suffix}", resume, overwrite)
    clock = _WallClock(out, resume)
    clock.tick()  # a segment killed while the features are computed still counts as one
    model_config = model_factory()
    data = prepare_data(data_dir, model_config.features, progress)
    splits = {seed: protocol_splits(data.cycles, protocol, seed) for seed in seeds}
    packed = min(jobs, len(seeds)) > 1
    waves = _training_waves(data, splits, recipe, progress, model_config.features)
    experiment = _Experiment(config, model_config, recipe, protocol, data, out, run_device,
                             resume, progress and not packed, clock, waves)
    if packed:
        runs = _run_packed(experiment, seeds, splits, jobs)
    else:
        runs = [_run_seed(experiment, seed, splits[seed]) for seed in seeds]
    results = _results(experiment, seeds, splits[seeds[0]], runs, clock.summary())
    (out / f"results{suffix}.json").write_text(json.dumps(results, indent=2))
    (out / f"results{suffix}.md").write_text(results_markdown(results))
    results["out"] = str(out)
    return results


def _training_waves(
    data: PreparedData, splits: dict[int, dict[str, pd.DataFrame]], recipe: TrainConfig,
    progress: bool,
    features: FeatureConfig,
) -> WaveRows | None:
    """The fitted waveforms of every seed's training cycles when the recipe computes features on
    the fly (waveform effects), cached on disk (a full train split is 2.9 GB of float32: never
    held in memory); None otherwise."""
    if not recipe.needs_waveforms:
        return None
    rows = np.unique(np.concatenate([s["train"]["row"] for s in splits.values()]))
    waves = cached_waveforms(data.cycles.iloc[rows], data.data_dir, features, progress=progress)
    return WaveRows(waves, rows)


def _run_packed(
    e: _Experiment, seeds: list[int], splits: dict[int, dict[str, pd.DataFrame]], jobs: int
) -> list[dict]:
    """Each seed in its own spawned process (CUDA needs spawn), ``jobs`` at a time. A process
    gets the feature cache's file name, not its 2 GB of values, and opens the waveform cache that
    :func:`reproduce` built for every seed's training rows."""
    features = e.data.features
    light = replace(e, data=replace(e.data, features=None), waves=None, clock=None)
    tasks = [(light, features.filename, features.shape, seed, splits, jobs) for seed in seeds]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(seeds)), mp_context=context) as pool:
        return list(pool.map(_packed_seed, tasks))


def _packed_seed(task: tuple) -> dict:
    """One seed of :func:`_run_packed`, inside its process."""
    light, filename, shape, seed, splits, jobs = task
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // jobs))
    features = np.memmap(filename, dtype=np.float16, mode="r", shape=shape)
    e = replace(light, data=replace(light.data, features=features))
    waves = _training_waves(e.data, splits, e.recipe, False, e.model_config.features)  # cached
    return _run_seed(replace(e, waves=waves), seed, splits[seed])


def _run_seed(e: _Experiment, seed: int, splits: dict[str, pd.DataFrame]) -> dict:
    """Train one seed; its test figures at the selected checkpoint and at the last epoch."""
    clock = _WallClock(e.out / f"seed_{seed}", e.resume)
    evaluated, select, _ = PROTOCOLS[e.protocol]
    sets = {name: split_data(rows, e.data.features) for name, rows in splits.items()}
    description = describe_data(e.data, splits)
    result = train(
        e.model_config, split_data(splits["train"], e.data.features, e.waves),
        {name: sets[name] for name in evaluated}, replace(e.recipe, seed=seed),
        e.out / f"seed_{seed}", select=select, resume=e.resume, progress=e.progress,
        meta={"protocol": e.protocol, "data": description},
        on_epoch_end=lambda *_: (clock.tick(), e.clock is not None and e.clock.tick()),
    )
    run = {"seed": seed, "best_epoch": result.best_epoch,
           "val_score": result.best_metrics.get("val_score"), "splits": description["splits"]}
    figures = None
    for prefix, name in (("", "best.pt"), ("last_", "last.pt")):
        if figures is None or result.best_epoch != e.recipe.epochs:  # else: the same weights
            model, _, _ = load_model(result.run_dir / name, map_location=e.device)
            figures = evaluate(model, sets["test"], e.recipe.eval_batch_size, e.device)
        run.update(headline(figures, f"{prefix}test_"))
        run[f"{prefix}confusion"] = figures["confusion"]
    return {**run, "epochs": e.recipe.epochs, **clock.summary()}


def _results(
    e: _Experiment, seeds: list[int], first: dict[str, pd.DataFrame], runs: list[dict],
    wall: dict,
) -> dict:
    """The content of results.json (the data described with the first seed's splits)."""
    select = PROTOCOLS[e.protocol][1]
    return json_safe({
        "protocol": e.protocol,
        "warning": PAPER_WARNING if e.protocol == "paper" else None,
        "selection": f"best {select[0]} {select[1]}",
        "config": e.config,
        "model_config": asdict(e.model_config),
        "train_config": asdict(e.recipe),
        "data": describe_data(e.data, first),
        "seeds": seeds,
        "runs": runs,
        "aggregate": aggregate(runs),
        "device": str(e.device),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
        **wall,
    })
