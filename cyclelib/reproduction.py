"""``cyclelib reproduce`` and ``cyclelib evaluate``: the honest protocol end to end (DESIGN §7).

- official protocol (default): the official per-recording split; a validation set of whole
  train patients (:func:`cyclelib.dataset.validation_split`, seeded by the run's seed); the
  checkpoint with the best validation Score is kept; test Sp/Se/Score/accuracy are reported at
  that checkpoint and at the last epoch; several seeds give mean ± std.
- ``protocol="paper"``: the original's numbers, for comparison only: its leaky per-patient split
  (:func:`cyclelib.dataset.paper_protocol_split`) and the epoch with the best TEST accuracy.
  Its files are ``results_PAPER_PROTOCOL.json/.md`` and their headers say why not to trust them.

Only cycles whose recording has audio are used (the development copy of ICBHI has audio for 133
of 920 recordings); the results say exactly how many cycles and recordings that leaves.
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cyclelib.audio import iter_cycle_waveforms
from cyclelib.checkpoint import load_model, prepare_run_dir
from cyclelib.constants import CLASS_NAMES
from cyclelib.dataset import paper_protocol_split, validation_split
from cyclelib.feature_cache import cached_features
from cyclelib.features import FeatureConfig
from cyclelib.icbhi import load_icbhi
from cyclelib.model import ModelConfig
from cyclelib.synthetic import FIRST_PATIENT, resolve_data_dir
from cyclelib.train import SplitData, TrainConfig, evaluate, resolve_device, train

CONFIGS = {  # name -> (network, training recipe)
    "faithful": (ModelConfig.faithful, TrainConfig.faithful),
    "small": (ModelConfig.small, TrainConfig.quick),
}
PROTOCOLS = {  # name -> (sets evaluated each epoch, selection (set, metric), file suffix)
    "official": (("val",), ("val", "score"), ""),
    "paper": (("test",), ("test", "acc"), "_PAPER_PROTOCOL"),
}
METRICS = ("val_score", "test_sp", "test_se", "test_score", "test_acc", "best_epoch")
PAPER_WARNING = (
    "PAPER PROTOCOL, NOT A VALID RESULT: the original's leaky split (every recording of a patient "
    "with a train recording is trained on, so test cycles of patients on both sides are seen in "
    "training) and the epoch chosen by the best TEST accuracy. Shown only to measure how much "
    "these two errors inflate the figures (DESIGN §7)."
)


@dataclass
class PreparedData:
    """An ICBHI folder's usable cycles (those with audio) and their cached features."""

    data_dir: Path
    synthetic: bool
    cycles: pd.DataFrame  # rows with audio, index 0..M-1 = row of ``features``
    features: np.ndarray  # (M, 3, 84, 688) float16 memmap
    recordings: int  # annotated recordings in the folder
    recordings_with_audio: int


def check_choices(config: str, protocol: str = "official") -> None:
    """Refuse an unknown configuration or protocol name at once, with the valid names."""
    if config not in CONFIGS:
        raise ValueError(f"unknown config {config!r}: choose one of {', '.join(CONFIGS)}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")


def prepare_data(
    data_dir: str | Path | None, feature_config: FeatureConfig, progress: bool = True
) -> PreparedData:
    """Scan the folder (None: the synthetic set), keep the cycles with audio, cache features.

    A folder counts as synthetic when all its patients are numbered from ``FIRST_PATIENT``
    (301; real ICBHI patients are 101-226). Raises ValueError when no recording (or no train or
    no test recording) has audio.
    """
    folder, synthetic = resolve_data_dir(data_dir)
    icbhi = load_icbhi(folder)
    synthetic = synthetic or bool((icbhi.cycles["patient"] >= FIRST_PATIENT).all())
    usable = icbhi.cycles[icbhi.cycles["has_audio"]].reset_index(drop=True)
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


def protocol_splits(cycles: pd.DataFrame, protocol: str, seed: int) -> dict[str, pd.DataFrame]:
    """{"train", "val" (official only), "test"}: the rows of each set, with a column ``row``
    (their position in ``cycles``, i.e. in the feature array). The paper protocol's train
    repeats the leaked test rows."""
    cycles = _with_rows(cycles)
    split = validation_split(cycles, seed=seed) if protocol == "official" else (
        paper_protocol_split(cycles))
    names = ("train", "val", "test") if protocol == "official" else ("train", "test")
    return {name: split[split["split"] == name] for name in names}


def _with_rows(cycles: pd.DataFrame) -> pd.DataFrame:
    """``cycles`` with a column ``row``: each cycle's position in the feature array."""
    return cycles.assign(row=np.arange(len(cycles)))


def split_data(rows: pd.DataFrame, features: np.ndarray, waves: dict | None = None) -> SplitData:
    """The :class:`SplitData` of the rows of one set (as :func:`protocol_splits` gives them);
    ``waves`` ({row: waveform}) only for training with waveform effects."""
    stacked = None if waves is None else np.stack([waves[r] for r in rows["row"]])
    return SplitData(rows["label"].to_numpy(np.int64), features, rows["row"].to_numpy(np.int64),
                     stacked)


def _load_waves(data: PreparedData, rows: np.ndarray, progress: bool) -> dict[int, np.ndarray]:
    """{row: fitted float32 waveform} for the given feature rows (on-the-fly augmentation)."""
    subset = data.cycles.iloc[rows]
    waves = {}
    for positions, batch in iter_cycle_waveforms(subset, data.data_dir, progress=progress):
        waves.update(zip(rows[positions].tolist(), batch, strict=True))
    return waves


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


def _clean(value):
    """JSON-safe: NaN -> None, numpy scalars -> Python, recursively."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value


def _aggregate(runs: list[dict]) -> dict:
    """mean and std (n-1; None with one seed) of every figure over the seeds."""
    out = {}
    for key in (*METRICS, *(f"last_{m}" for m in METRICS[1:5])):
        values = np.array([np.nan if r[key] is None else r[key] for r in runs], dtype=float)
        std = float(np.std(values, ddof=1)) if len(values) > 1 else None
        out[key] = {"mean": float(np.mean(values)), "std": std}
    out["confusion_sum"] = np.sum([r["confusion"] for r in runs], axis=0).tolist()
    return out


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
) -> dict:
    """Train ``config`` once per seed under ``protocol`` and write the results (DESIGN §7).

    Writes ``out/results{suffix}.json`` and ``.md`` (suffix ``_PAPER_PROTOCOL`` for the paper
    protocol) and one run folder per seed (``seed_N``: log, ``best.pt``, ``last.pt``). ``out``
    defaults to ``runs/{config}`` (``runs/{config}_PAPER_PROTOCOL``). ``train_changes`` overrides
    fields of the training recipe (e.g. ``{"loss": LossConfig(...)}`` for an ablation).
    Returns the content of results.json.
    """
    check_choices(config, protocol)
    run_device = resolve_device(device)
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and at least one, got {seeds}")
    if epochs is not None and epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    evaluated, select, suffix = PROTOCOLS[protocol]
    began = time.perf_counter()
    model_factory, train_factory = CONFIGS[config]
    base = train_factory(device=device, **(train_changes or {}))
    if epochs is not None:
        base = replace(base, epochs=epochs)
    feature_config = FeatureConfig()
    out = prepare_run_dir(out or Path("runs") / f"{config}{suffix}", resume, overwrite)
    data = prepare_data(data_dir, feature_config, progress)
    all_splits = {seed: protocol_splits(data.cycles, protocol, seed) for seed in seeds}
    waves = None
    if base.wave_effects and base.augment.p_wave > 0:
        needed = np.unique(np.concatenate([s["train"]["row"] for s in all_splits.values()]))
        waves = _load_waves(data, needed, progress)
    runs = []
    for seed in seeds:
        seed_began = time.perf_counter()
        splits = all_splits[seed]
        sets = {name: split_data(rows, data.features, None) for name, rows in splits.items()}
        description = describe_data(data, splits)
        result = train(
            model_factory(), split_data(splits["train"], data.features, waves),
            {name: sets[name] for name in evaluated}, replace(base, seed=seed),
            out / f"seed_{seed}", select=select, feature_config=feature_config, resume=resume,
            progress=progress, meta={"protocol": protocol, "data": description},
        )
        run = {"seed": seed, "best_epoch": result.best_epoch,
               "val_score": result.best_metrics.get("val_score"),
               "splits": description["splits"]}
        figures = None
        for prefix, name in (("", "best.pt"), ("last_", "last.pt")):
            if figures is None or result.best_epoch != base.epochs:  # else: the same weights
                model, _, _ = load_model(result.run_dir / name, map_location=run_device)
                figures = evaluate(model, sets["test"], base.eval_batch_size, run_device)
            run.update({f"{prefix}test_{k}": figures[k] for k in ("sp", "se", "score", "acc")})
            run[f"{prefix}confusion"] = figures["confusion"]
        run["epochs"] = base.epochs
        run["wall_seconds"] = time.perf_counter() - seed_began
        runs.append(run)
    results = _clean({
        "protocol": protocol,
        "warning": PAPER_WARNING if protocol == "paper" else None,
        "selection": f"best {select[0]} {select[1]}",
        "config": config,
        "model_config": asdict(model_factory()),
        "train_config": asdict(base),
        "feature_config": asdict(feature_config),
        "data": describe_data(data, all_splits[seeds[0]]),
        "seeds": seeds,
        "runs": runs,
        "aggregate": _aggregate(runs),
        "device": str(run_device),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
        "wall_seconds": time.perf_counter() - began,
    })
    (out / f"results{suffix}.json").write_text(json.dumps(results, indent=2))
    (out / f"results{suffix}.md").write_text(results_markdown(results))
    results["out"] = str(out)
    return results


def read_history(results: dict, seed: int | None = None) -> list[dict]:
    """The per-epoch log (``train_log.jsonl`` rows) of one seed's run of ``results`` (as
    :func:`reproduce` returns them); ``seed`` defaults to the first."""
    seed = results["seeds"][0] if seed is None else seed
    log = Path(results["out"]) / f"seed_{seed}" / "train_log.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()]


def _pm(stat: dict, percent: bool = True) -> str:
    """'mean ± std' (percent by default); just the mean for one seed; 'n/a' for None."""
    if stat["mean"] is None or math.isnan(stat["mean"]):
        return "n/a"
    scale, digits = (100.0, 2) if percent else (1.0, 1)
    text = f"{stat['mean'] * scale:.{digits}f}"
    return text if stat["std"] is None else f"{text} ± {stat['std'] * scale:.{digits}f}"


def results_markdown(results: dict) -> str:
    """The results table a reader can paste into a paper (mean ± std over seeds, in %)."""
    agg, data = results["aggregate"], results["data"]
    kind = "SYNTHETIC teaching set (not ICBHI)" if data["synthetic"] else "ICBHI 2017"
    title = "PAPER PROTOCOL (leaky split, test-set selection)" if results["warning"] else (
        "official split, validation-selected")
    lines = [f"# CycleGuardian `{results['config']}`: {title}", ""]
    if results["warning"]:
        lines += [f"**{results['warning']}**", ""]
    lines += [
        f"Data: {kind} at `{data['folder']}`; {data['restriction']}.",
        "Splits (seed {}): {}.".format(results["seeds"][0], "; ".join(
            f"{n} {s['recordings']} recordings / {s['patients']} patients / {s['cycles']} cycles"
            for n, s in data["splits"].items())),
        f"Selection: {results['selection']}; {len(results['seeds'])} seed(s) "
        f"{results['seeds']}, {results['train_config']['epochs']} epochs, device "
        f"{results['device']}, torch {results['torch']}; mean ± std (n-1) over seeds, in %.",
        "",
        "| checkpoint | val Score | test Sp | test Se | test Score | test acc | epoch |",
        "|---|---|---|---|---|---|---|",
        "| selected | {} | {} | {} | {} | {} | {} |".format(
            _pm(agg["val_score"]), *(_pm(agg[k]) for k in METRICS[1:5]),
            _pm(agg["best_epoch"], percent=False)),
        "| last epoch | | {} | {} | {} | {} | {} |".format(
            *(_pm(agg[f"last_{k}"]) for k in METRICS[1:5]), results["train_config"]["epochs"]),
        "",
        "Per seed (selected checkpoint):",
        "",
        "| seed | epoch | val Score | test Sp | test Se | test Score | test acc |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        cells = [r["val_score"], r["test_sp"], r["test_se"], r["test_score"], r["test_acc"]]
        lines.append(f"| {r['seed']} | {r['best_epoch']} | " + " | ".join(
            "n/a" if v is None else f"{100 * v:.2f}" for v in cells) + " |")
    return "\n".join(lines) + "\n"


def evaluate_checkpoint(path: str | Path, data_dir: str | Path | None = None) -> dict:
    """Test-split figures of a saved model (any ``best.pt``/``last.pt``).

    ``data_dir`` None: the folder the checkpoint was trained on when it still exists, else the
    synthetic set. Uses the official test recordings that have audio.
    """
    model, feature_config, meta = load_model(path)
    trained_on = meta.get("data", {}).get("folder")
    if data_dir is None and trained_on and Path(trained_on).is_dir():
        data_dir = trained_on
    data = prepare_data(data_dir, feature_config)
    cycles = _with_rows(data.cycles)
    test = cycles[cycles["split"] == "test"]
    figures = evaluate(model, split_data(test, data.features, None), 64, "cpu")
    return _clean({
        "checkpoint": str(path), "epoch": meta.get("epoch"), "protocol": meta.get("protocol"),
        "data": describe_data(data, {"test": test}),
        **{f"test_{k}": figures[k] for k in ("sp", "se", "score", "acc")},
        "confusion": figures["confusion"],
    })
