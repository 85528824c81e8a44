"""The trainer (DESIGN §6): exact resume after a crash, run-folder safety, NaN stop, atomic
checkpoints, EMA, schedule scaling, the on-the-fly waveform path, and load_model round trips.

Inputs are random spectrograms (the trainer does not care what they show), so these tests need
no audio and stay fast; learning on real sounds is tested in test_reproduction.py.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from cyclelib.augment import AugmentConfig
from cyclelib.checkpoint import (
    FORMAT_VERSION,
    RunExistsError,
    capture_rng,
    load_checkpoint,
    load_model,
    restore_rng,
    save_checkpoint,
)
from cyclelib.device import resolve_device
from cyclelib.evaluation import evaluate
from cyclelib.features import FeatureConfig
from cyclelib.model import CycleGuardian, ModelConfig
from cyclelib.prepare import SplitData
from cyclelib.train import LOSS_TERMS, TrainConfig, TrainingDiverged, _Inputs, train

TINY = TrainConfig.quick(epochs=3, batch_size=8, device="cpu", ema_decay=0.1)


@pytest.fixture(scope="module")
def data() -> tuple[SplitData, SplitData]:
    rng = np.random.default_rng(0)
    features = rng.standard_normal((28, 3, 84, 688)).astype(np.float16)
    labels = np.concatenate([rng.integers(0, 4, 20), np.arange(8) % 4])  # val: every class
    return (SplitData(labels[:20], features, np.arange(20)),
            SplitData(labels[20:], features, np.arange(20, 28)))


def run(data, out, config=TINY, **kwargs):
    train_data, val_data = data
    return train(ModelConfig.small(), train_data, {"val": val_data}, config, out,
                 progress=False, **kwargs)


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """An uninterrupted 3-epoch run with EMA."""
    return run(data, tmp_path_factory.mktemp("reference") / "run")


def test_log_has_every_loss_term_lr_and_validation_figures(reference) -> None:
    assert len(reference.history) == 3
    lines = (reference.run_dir / "train_log.jsonl").read_text().splitlines()
    assert len(lines) == 3
    for row in reference.history:
        for key in [*(f"loss_{t}" for t in LOSS_TERMS), "lr", "val_sp", "val_se", "val_score"]:
            assert np.isfinite(row[key]), key
    assert [row["epoch"] for row in reference.history] == [1, 2, 3]
    best = max(range(3), key=lambda e: reference.history[e]["val_score"])
    assert reference.best_epoch == best + 1  # the first epoch with the best validation Score
    assert reference.best_metrics["val_score"] == reference.history[best]["val_score"]


def test_resume_after_a_crash_gives_the_same_run(data, reference, tmp_path) -> None:
    def crash(epoch: int, row: dict) -> None:
        if epoch == 2:
            raise KeyboardInterrupt("simulated kill after epoch 2")

    with pytest.raises(KeyboardInterrupt):
        run(data, tmp_path / "run", on_epoch_end=crash)
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 2
    torch.manual_seed(1234)  # the resumed run must not depend on the global state it finds
    resumed = run(data, tmp_path / "run", resume=True)
    for a, b in zip(resumed.history, reference.history, strict=True):
        assert {k: v for k, v in a.items() if k != "seconds"} == {
            k: v for k, v in b.items() if k != "seconds"}
    assert resumed.best_epoch == reference.best_epoch
    for name in ("best.pt", "last.pt"):
        got, want = (load_checkpoint(r.run_dir / name)["model"] for r in (resumed, reference))
        assert all(torch.equal(got[k], want[k]) for k in want), name
    assert len((tmp_path / "run" / "train_log.jsonl").read_text().splitlines()) == 3


def test_existing_run_folder_needs_resume_or_overwrite(data, reference) -> None:
    with pytest.raises(RunExistsError, match="overwrite"):
        run(data, reference.run_dir)
    with pytest.raises(ValueError, match="another training configuration"):
        run(data, reference.run_dir, config=replace(TINY, lr=0.5), resume=True)


def test_overwrite_replaces_the_run(data, tmp_path) -> None:
    short = replace(TINY, epochs=1)
    run(data, tmp_path / "run", config=short)
    (tmp_path / "run" / "stale.txt").write_text("old")
    result = run(data, tmp_path / "run", config=short, overwrite=True)
    assert len(result.history) == 1 and not (tmp_path / "run" / "stale.txt").exists()


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(data, tmp_path, monkeypatch) -> None:
    calls = {"n": 0}
    build = _Inputs.__call__

    def poisoned(self, index, generator):
        calls["n"] += 1
        x = build(self, index, generator)
        return x * float("nan") if calls["n"] > 3 else x  # 3 steps per epoch: epoch 2 fails

    monkeypatch.setattr(_Inputs, "__call__", poisoned)
    with pytest.raises(TrainingDiverged, match=r"epoch 2, step 1.*last\.pt"):
        run(data, tmp_path / "run", config=replace(TINY, batch_size=7))
    kept = load_checkpoint(tmp_path / "run" / "last.pt")
    assert kept["epoch"] == 1 and all(torch.isfinite(v).all() for v in kept["model"].values())


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch) -> None:
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(3)}, "model_config": {}})

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"model": {"w": torch.zeros(3)}, "model_config": {}})
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temporary file left


def test_a_checkpoint_of_another_format_is_refused_clearly(tmp_path) -> None:
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(3)}, "model_config": {}})
    assert load_checkpoint(path)["format_version"] == FORMAT_VERSION
    old = {**load_checkpoint(path), "format_version": FORMAT_VERSION - 1}
    torch.save(old, path)
    with pytest.raises(ValueError, match=rf"ck.pt is a checkpoint of format {FORMAT_VERSION - 1}, "
                                         rf"but this cyclelib reads format {FORMAT_VERSION}"):
        load_model(path)


def test_rng_states_round_trip() -> None:
    state = capture_rng()
    first = (torch.rand(3), np.random.rand(3), __import__("random").random())  # noqa: NPY002
    restore_rng(state)
    again = (torch.rand(3), np.random.rand(3), __import__("random").random())  # noqa: NPY002
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert first[2] == again[2]


def test_load_model_gives_the_evaluated_model(data, reference) -> None:
    model, features, meta = load_model(reference.run_dir / "best.pt")
    assert isinstance(model, CycleGuardian) and not model.training
    assert features == FeatureConfig() and meta["epoch"] == reference.best_epoch
    assert meta["train_config"]["ema_decay"] == 0.1
    figures = evaluate(model, data[1], 64, "cpu")
    assert figures["score"] == reference.best_metrics["val_score"]
    with pytest.raises(FileNotFoundError):
        load_model(reference.run_dir / "missing.pt")


def test_milestones_scale_with_the_number_of_epochs() -> None:
    assert TrainConfig().scaled_milestones() == [200, 350, 450, 550]
    assert TrainConfig(epochs=60).scaled_milestones() == [20, 35, 45, 55]
    assert TrainConfig(epochs=2).scaled_milestones() == [1, 1, 2, 2]


def test_device_names() -> None:
    assert resolve_device("cpu") == torch.device("cpu") == resolve_device(torch.device("cpu"))
    assert resolve_device(None) == resolve_device("auto")
    with pytest.raises(ValueError, match="auto, cpu or cuda"):
        resolve_device("tpu")


def test_waveform_effects_compute_features_on_the_fly(tmp_path) -> None:
    rng = np.random.default_rng(1)
    waves = (0.1 * rng.standard_normal((4, 176_000))).astype(np.float32)
    features = np.zeros((4, 3, 84, 688), np.float16)
    labels = np.array([0, 1, 2, 3])
    config = TrainConfig(epochs=1, batch_size=4, device="cpu",
                         augment=AugmentConfig(p_wave=1.0))
    with pytest.raises(ValueError, match="waveforms"):
        train(ModelConfig.small(), SplitData(labels, features, np.arange(4)),
              {"val": SplitData(labels, features, np.arange(4))}, config, tmp_path / "a",
              progress=False)
    result = train(ModelConfig.small(), SplitData(labels, features, np.arange(4), waves),
                   {"val": SplitData(labels, features, np.arange(4))}, config, tmp_path / "b",
                   progress=False)
    assert np.isfinite(result.history[0]["loss_total"])
