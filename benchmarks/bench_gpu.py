"""The faithful recipe at full size on one GPU (DESIGN §6, §9): seconds per epoch, where they go,
GPU memory, the projection for 600 epochs, and whether the fast precision learns the same.

Three parts, each optional:

1. ``--data-dir`` (the full-size synthetic set of ``cyclelib synth --like-icbhi``, or ICBHI):
   the feature cache (built on the device) and the training waveforms, timed; then, for each
   mode (``augmented``: waveform effects and the hybrid spectrogram on the GPU every step;
   ``cached``: cached features) and precision, ``--epochs`` epochs of :func:`cyclelib.train.
   train` on the official split (validation patients held out): the last epoch's seconds (warm
   kernels), the peak GPU memory and 600 x that; then one epoch's steps again, synchronised
   after each stage, for the share of data (gather, waveform effects, shifts, SpecAugment),
   front end (hybrid spectrogram), forward/backward/Adam, evaluation and checkpoint.
2. ``--equal-epochs N``: on the synthetic teaching set, ``cyclelib.reproduce`` of the faithful
   recipe for N epochs, seeds ``--seeds``, at fp32 and at each ``--precisions`` entry: the
   validation-selected test Score of each, mean and spread.
3. ``--resume-epochs N`` (with 2): the same run stopped after N // 2 epochs and resumed: its
   selected epoch and figures beside the uninterrupted run's.

    python benchmarks/bench_gpu.py --data-dir DIR [--epochs 2] [--precisions fp32 bf16]
        [--modes augmented cached] [--equal-epochs 60] [--resume-epochs 40] [--seeds 0 1 2]
        [--jobs 3] [--device cuda]

``--device cpu`` runs every part on the CPU (tiny sizes: to test the script, not to time it).
Prints a table per part, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from cyclelib.device import use_huge_pages

ORIGINAL_EPOCHS = 600


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _clock(device: torch.device) -> float:
    _sync(device)
    return time.perf_counter()


def machine(device: torch.device) -> dict:
    """The host CPU and, on CUDA, the GPU and the library versions."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                .splitlines() if line.startswith("model name")), platform.processor())
    info = {"cpu": cpu, "torch": torch.__version__, "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def prepare(data_dir: str, max_train: int | None) -> dict:
    """Features (cached on ``device``), the official split and the training waveforms, timed."""
    from cyclelib.data import protocol_splits
    from cyclelib.feature_cache import cached_waveforms
    from cyclelib.model import ModelConfig
    from cyclelib.prepare import WaveRows, prepare_data, split_data

    began = time.perf_counter()  # the cache is built on the GPU when there is one
    features = ModelConfig.faithful().features
    data = prepare_data(data_dir, features, progress=False)
    features_s = time.perf_counter() - began
    sets = protocol_splits(data.cycles, "official", 0)
    if max_train:
        sets["train"] = sets["train"].iloc[:max_train]
    began = time.perf_counter()
    rows = np.sort(sets["train"]["row"].to_numpy())
    waves = WaveRows(cached_waveforms(data.cycles.iloc[rows], data.data_dir, features,
                                      progress=False), rows)
    waves_s = time.perf_counter() - began
    return {
        "train": split_data(sets["train"], data.features, waves),
        "val": split_data(sets["val"], data.features),
        "synthetic": data.synthetic, "cycles": len(data.cycles),
        "sizes": {k: len(v) for k, v in sets.items()},
        "features_s": features_s, "waves_s": waves_s,
    }


def recipe(mode: str, precision: str, device: torch.device, epochs: int, batch: int | None):
    from cyclelib.train import TrainConfig

    config = TrainConfig.faithful(epochs=epochs, device=device.type, precision=precision,
                                  wave_effects=mode == "augmented")
    return replace(config, batch_size=batch) if batch else config


def epoch_speed(prep: dict, mode: str, precision: str, device: torch.device, epochs: int,
                batch: int | None) -> dict:
    """``epochs`` epochs of :func:`cyclelib.train.train`; the last one's seconds and the peak."""
    from cyclelib.model import ModelConfig
    from cyclelib.train import train

    config = recipe(mode, precision, device, epochs, batch)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with tempfile.TemporaryDirectory() as tmp:
        result = train(ModelConfig.faithful(), prep["train"], {"val": prep["val"]}, config,
                       f"{tmp}/run", progress=False)
    last = result.history[-1]["seconds"]
    return {"mode": mode, "precision": precision, "epoch_s": last,
            "first_epoch_s": result.history[0]["seconds"],
            "projected_600_min": ORIGINAL_EPOCHS * last / 60,
            "peak_gpu_gb": torch.cuda.max_memory_allocated(device) / 2**30
            if device.type == "cuda" else None,
            "loss_last": result.history[-1]["loss_total"]}


def epoch_shares(prep: dict, mode: str, precision: str, device: torch.device,
                 batch: int | None) -> dict:
    """One epoch's steps with a synchronisation after each stage: seconds per stage."""
    from cyclelib.augment import augment_waveforms, circular_shift, spec_augment
    from cyclelib.checkpoint import save_checkpoint
    from cyclelib.evaluation import evaluate
    from cyclelib.features import HybridSpectrogram
    from cyclelib.gpu import precision as precision_context
    from cyclelib.gpu import to_device
    from cyclelib.model import ModelConfig
    from cyclelib.train import _batches, _Training, epoch_generator

    config = recipe(mode, precision, device, 1, batch)
    model_config = ModelConfig.faithful()
    train_data = prep["train"].resident(device) if device.type == "cuda" else prep["train"]
    val = prep["val"].resident(device) if device.type == "cuda" else prep["val"]
    training = _Training(model_config, config, device)
    front = HybridSpectrogram(model_config.features).to(device)
    stages = dict.fromkeys(("data", "front_end", "forward_backward", "evaluation", "checkpoint"),
                           0.0)
    generator = epoch_generator(0, 0)
    with precision_context(precision, device) as dtype:
        training.objective.encoder_dtype = dtype
        training.objective.train()
        for index in _batches(len(train_data), config.batch_size, generator):
            t0 = _clock(device)
            if mode == "augmented":
                waves = augment_waveforms(train_data.waveforms(index).to(device), config.augment,
                                          generator)
                waves = circular_shift(waves, config.augment.p_shift, generator)
                t1 = _clock(device)
                with torch.no_grad():
                    x = front(waves)
                t2 = _clock(device)
            else:
                x = circular_shift(train_data.spectrograms(index).to(device),
                                   config.augment.p_shift, generator)
                t1 = t2 = _clock(device)
            x = spec_augment(x, config.augment, generator)
            t3 = _clock(device)
            labels = to_device(torch.from_numpy(train_data.labels[index]), device)
            terms, _ = training.objective(x, labels, generator)
            training.optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            training.optimizer.step()
            t4 = _clock(device)
            stages["data"] += (t1 - t0) + (t3 - t2)
            stages["front_end"] += t2 - t1
            stages["forward_backward"] += t4 - t3
        t0 = _clock(device)
        evaluate(training.evaluated, val, config.eval_batch_size, device)
        stages["evaluation"] = _clock(device) - t0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        save_checkpoint(Path(tmp) / "last.pt", training.state_dict())
        stages["checkpoint"] = time.perf_counter() - t0
    total = sum(stages.values())
    return {"mode": mode, "precision": precision, "total_s": total,
            **{f"{k}_s": v for k, v in stages.items()},
            **{f"{k}_share": v / total for k, v in stages.items()}}


def equal_in_result(precisions: list[str], seeds: list[int], epochs: int, device: torch.device,
                    out: Path, jobs: int) -> list[dict]:
    """The faithful recipe on the teaching set at each precision: selected test Scores."""
    from cyclelib.reproduction import reproduce

    rows = []
    for precision in precisions:
        began = time.perf_counter()
        results = reproduce(config="faithful", epochs=epochs, seeds=seeds, device=device.type,
                            out=out / f"equal_{precision}", overwrite=True, progress=False,
                            train_changes={"precision": precision}, jobs=jobs)
        scores = [run["test_score"] for run in results["runs"]]
        rows.append({"precision": precision, "seeds": seeds, "epochs": epochs,
                     "test_scores": scores, "mean": statistics.mean(scores),
                     "std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
                     "best_epochs": [run["best_epoch"] for run in results["runs"]],
                     "jobs": jobs, "minutes": (time.perf_counter() - began) / 60})
    return rows


class _Stop(Exception):
    pass


def stop_and_resume(precision: str, epochs: int, device: torch.device, out: Path) -> dict:
    """Seed 0 for ``epochs`` epochs, uninterrupted and stopped at half then resumed."""
    from cyclelib import train as train_module
    from cyclelib.reproduction import reproduce

    changes = {"precision": precision}
    began = time.perf_counter()
    whole = reproduce(config="faithful", epochs=epochs, seeds=[0], device=device.type,
                      out=out / "whole", overwrite=True, progress=False, train_changes=changes)
    minutes = (time.perf_counter() - began) / 60
    original_save = train_module._save

    def stopping_save(training, result, row, *args) -> None:
        original_save(training, result, row, *args)
        if row["epoch"] == epochs // 2:
            raise _Stop

    train_module._save = stopping_save
    try:
        reproduce(config="faithful", epochs=epochs, seeds=[0], device=device.type,
                  out=out / "resumed", overwrite=True, progress=False, train_changes=changes)
    except _Stop:
        pass
    finally:
        train_module._save = original_save
    resumed = reproduce(config="faithful", epochs=epochs, seeds=[0], device=device.type,
                        out=out / "resumed", resume=True, progress=False, train_changes=changes)
    keys = ("best_epoch", "val_score", "test_sp", "test_se", "test_score")
    return {"precision": precision, "epochs": epochs, "stopped_at": epochs // 2,
            "uninterrupted_minutes": minutes,
            "uninterrupted": {k: whole["runs"][0][k] for k in keys},
            "resumed": {k: resumed["runs"][0][k] for k in keys}}


def main() -> None:
    use_huge_pages()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="full-size set for part 1")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per speed case (>= 2)")
    parser.add_argument("--modes", nargs="+", default=["augmented", "cached"],
                        choices=["augmented", "cached"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--batch", type=int, default=None, help="override the recipe's 128")
    parser.add_argument("--max-train", type=int, default=None, help="first N train cycles only")
    parser.add_argument("--equal-epochs", type=int, default=0)
    parser.add_argument("--resume-epochs", type=int, default=0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="seeds trained at once in part 2")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--out", default=None, help="folder for the runs (default: temporary)")
    parser.add_argument("--json-to", default=None, help="also write the JSON here, part by part")
    args = parser.parse_args()
    device = torch.device(args.device)
    report: dict = {"benchmark": "gpu", **machine(device)}

    def save() -> None:
        if args.json_to:
            Path(args.json_to).write_text(json.dumps(report, indent=1))

    print(f"{report['cpu']}; torch {report['torch']}; {report.get('gpu', args.device)}")
    if args.data_dir:
        prep = prepare(args.data_dir, args.max_train)
        report["data"] = {k: prep[k] for k in ("synthetic", "cycles", "sizes", "features_s",
                                               "waves_s")}
        print(f"data: {prep['cycles']} cycles {prep['sizes']} (synthetic: {prep['synthetic']}); "
              f"feature cache {prep['features_s']:.1f} s, "
              f"training waveforms {prep['waves_s']:.1f} s")
        save()
        report["speed"], report["shares"] = [], []
        print(f"{'mode':<10}{'precision':<10}{'s/epoch':>9}{'1st epoch':>10}{'600 ep. min':>12}"
              f"{'GPU GB':>8}")
        for mode in args.modes:
            for precision in args.precisions:
                r = epoch_speed(prep, mode, precision, device, args.epochs, args.batch)
                report["speed"].append(r)
                save()
                print(f"{mode:<10}{precision:<10}{r['epoch_s']:>9.2f}{r['first_epoch_s']:>10.2f}"
                      f"{r['projected_600_min']:>12.1f}{(r['peak_gpu_gb'] or 0):>8.2f}")
        print(f"{'mode':<10}{'precision':<10}{'data':>7}{'front':>7}{'fwd/bwd':>8}{'eval':>7}"
              f"{'ckpt':>7}  (share of a synchronised epoch)")
        for mode in args.modes:
            for precision in args.precisions:
                r = epoch_shares(prep, mode, precision, device, args.batch)
                report["shares"].append(r)
                save()
                print(f"{mode:<10}{precision:<10}" + "".join(
                    f"{r[f'{k}_share']:>{w}.0%}" for k, w in (("data", 7), ("front_end", 7),
                    ("forward_backward", 8), ("evaluation", 7), ("checkpoint", 7))))
    out = Path(args.out or tempfile.mkdtemp(prefix="bench_gpu_"))
    if args.equal_epochs:
        precisions = ["fp32"] + [p for p in args.precisions if p != "fp32"]
        report["equal"] = []
        for name in precisions:  # saved after each, so a cut-off session keeps what it did
            report["equal"] += equal_in_result([name], args.seeds, args.equal_epochs, device, out,
                                               args.jobs)
            save()
        print(f"{'precision':<10}{'test Score per seed':<30}{'mean ± std':>16}{'min':>7}")
        for r in report["equal"]:
            scores = " ".join(f"{s:.3f}" for s in r["test_scores"])
            print(f"{r['precision']:<10}{scores:<30}{r['mean']:>9.3f} ± {r['std']:.3f}"
                  f"{r['minutes']:>7.1f}")
    if args.resume_epochs:
        fast = args.precisions[-1]
        report["resume"] = stop_and_resume(fast, args.resume_epochs, device, out)
        save()
        print(f"resume ({fast}): uninterrupted {report['resume']['uninterrupted']}")
        print(f"resume ({fast}): stopped and resumed {report['resume']['resumed']}")
    print(json.dumps(report, default=lambda v: float(v) if isinstance(v, np.floating) else str(v)))


if __name__ == "__main__":
    main()
