"""The GPU fast path (cyclelib.gpu): the pieces that run on the CPU too give the CPU path's
values, reduced precision is refused where it does not belong, and on a GPU (skipped without
one) a short run at each precision trains."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from cyclelib.data.audio import fit_length
from cyclelib.gpu import check_precision, precision, tuned_for
from cyclelib.losses import CycleGuardianObjective
from cyclelib.model import CycleGuardian, ModelConfig
from cyclelib.prepare import SplitData
from cyclelib.train import TrainConfig, train
from cyclelib.wave_effects import refit

CPU = torch.device("cpu")


def test_refit_on_the_device_equals_fit_length() -> None:
    lengths = [5, 17, 40, 41, 100]  # one batch: tiled, exact, cut
    waves = torch.arange(100, dtype=torch.float32).repeat(len(lengths), 1)
    fitted = refit(waves, lengths, 40)
    for row, length in zip(fitted, lengths, strict=True):
        assert torch.equal(row, torch.from_numpy(fit_length(waves[0, :length].numpy(), 40)))


def test_precision_names_and_devices_are_checked(tmp_path) -> None:
    check_precision("fp32", CPU)
    with pytest.raises(ValueError, match="choose one of fp32, tf32, bf16"):
        check_precision("fp16", CPU)
    with pytest.raises(ValueError, match="precision 'bf16' is for CUDA"):
        check_precision("bf16", CPU)
    with precision("fp32", CPU) as dtype:
        assert dtype is None
    with pytest.raises(ValueError, match="is for CUDA"):
        train(ModelConfig.small(), *_splits(), TrainConfig.quick(device="cpu", precision="tf32"),
              tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # refused before anything is written


def test_tuned_for_keeps_the_cpu_config_and_only_drops_memory_savers_on_cuda() -> None:
    config = ModelConfig.faithful()
    assert tuned_for(config, CPU) is config
    cuda = tuned_for(config, torch.device("cuda"))
    assert not cuda.recompute_stem and not cuda.tap_grad_last_conv
    assert replace(cuda, recompute_stem=True, tap_grad_last_conv=True) == config


def _splits() -> tuple[SplitData, dict[str, SplitData]]:
    rng = np.random.default_rng(0)
    features = rng.standard_normal((24, 3, 84, 688)).astype(np.float16)
    waves = (0.1 * rng.standard_normal((16, 176_000))).astype(np.float32)
    labels = np.arange(24) % 4
    return (SplitData(labels[:16], features, np.arange(16), waves),
            {"val": SplitData(labels[16:], features, np.arange(16, 24))})


def test_resident_split_gives_the_same_inputs() -> None:
    data, _ = _splits()
    data = SplitData(data.labels[3:], data.features, data.rows[3:], data.waves[3:])
    resident = data.resident(CPU, chunk=5)
    index = np.array([0, 2, 7, 12])
    assert isinstance(resident.features, torch.Tensor) and len(resident.features) == len(data)
    assert torch.equal(resident.spectrograms(index), data.spectrograms(index))
    assert torch.equal(resident.waveforms(index), data.waveforms(index))


def test_training_on_resident_splits_gives_the_same_numbers(tmp_path) -> None:
    """The GPU path's data handling (resident tensors, device-side indices, the divergence check
    kept on the device) run on the CPU: the same log as the host arrays give."""
    data, evals = _splits()
    config = TrainConfig.quick(epochs=1, batch_size=8, device="cpu", wave_effects=True)
    plain = train(ModelConfig.small(), data, evals, config, tmp_path / "plain", progress=False)
    resident = train(ModelConfig.small(), data.resident(CPU),
                     {k: v.resident(CPU) for k, v in evals.items()}, config,
                     tmp_path / "resident", progress=False)
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in plain.history]
    assert strip == [{k: v for k, v in row.items() if k != "seconds"} for row in resident.history]


def test_bf16_encoder_keeps_window_statistics_in_float32() -> None:
    """bfloat16 autocast of the encoder (on the CPU here, as CUDA does it): the loss stays close to
    float32's, every running statistic stays float32, and gradients reach every weight."""
    torch.manual_seed(0)
    model = CycleGuardian(ModelConfig.small())
    objective = CycleGuardianObjective(model)
    x, labels = torch.randn(4, 3, 84, 688), torch.arange(4)
    state = {k: v.clone() for k, v in objective.state_dict().items()}
    reference, _ = objective(x, labels, torch.Generator().manual_seed(0))
    objective.load_state_dict(state)
    objective.encoder_dtype = torch.bfloat16
    terms, out = objective(x, labels, torch.Generator().manual_seed(0))
    assert out.q.dtype == torch.float32
    assert terms["total"].item() == pytest.approx(reference["total"].item(), rel=0.05)
    terms["total"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in model.encoder.parameters())
    assert all(v.dtype == torch.float32 for k, v in model.state_dict().items()
               if k.endswith(("running_mean", "running_var")))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible)")
@pytest.mark.parametrize("name", ["fp32", "tf32", "bf16"])
def test_short_cuda_run_at_each_precision(tmp_path, name: str) -> None:
    data, evals = _splits()
    config = TrainConfig.quick(epochs=2, batch_size=8, device="cuda", wave_effects=True,
                               precision=name)
    result = train(ModelConfig.faithful(), data, evals, config, tmp_path / name, progress=False)
    assert len(result.history) == 2 and np.isfinite(result.history[-1]["loss_total"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible)")
def test_cuda_run_stopped_and_resumed_continues(tmp_path) -> None:
    """A checkpoint loaded onto the GPU gives back its CPU random states (they were refused once:
    map_location moved them to CUDA)."""
    data, evals = _splits()
    config = TrainConfig.quick(epochs=2, batch_size=8, device="cuda")

    def stop(epoch: int, row: dict) -> None:  # after epoch 1's checkpoint is written
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(ModelConfig.small(), data, evals, config, tmp_path / "run", progress=False,
              on_epoch_end=stop)
    resumed = train(ModelConfig.small(), data, evals, config, tmp_path / "run", resume=True,
                    progress=False)
    assert [row["epoch"] for row in resumed.history] == [1, 2]
