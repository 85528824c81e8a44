"""Exercises 3.1-3.3 and 5.1-5.2: the reference answers pass, typical mistakes fail with their
hint, the stubs are "not done yet" (docs/teaching.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cyclelib import CycleGuardian, ModelConfig
from cyclelib.exercises import NOT_DONE, check
from cyclelib.losses import target_distribution


def _line(capsys) -> str:
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def _passes(capsys, number: str, answer) -> str:
    assert check(number, answer)
    line = _line(capsys)
    assert line.startswith(f"✓ Exercise {number}:"), line
    return line


def _fails(capsys, number: str, answer, hint: str) -> None:
    assert not check(number, answer)
    line = _line(capsys)
    assert line.startswith(f"✗ Exercise {number}:") and hint in line, line


def _not_done(capsys, number: str, answer) -> None:
    _fails(capsys, number, answer, NOT_DONE)


# ---- 3.1 the tensor shape after each block ------------------------------------------------


def stage_shapes(config: ModelConfig, batch: int) -> dict[str, tuple[int, ...]]:
    """The notebook's solution of 3.1."""
    f, (c1, c2, c3, c4, c5) = config.features, config.channels
    n = batch * f.n_groups

    def out(size: int, kernel: int = 3, stride: int = 2, pad: int = 0) -> int:
        return (size + 2 * pad - kernel) // stride + 1

    h2, w2 = out(f.n_bins), out(f.group_size)
    h4, w4 = out(h2), out(w2)
    h5, w5 = out(h4, pad=1), out(w4, pad=1)
    return {
        "groups": (n, config.in_channels, f.n_bins, f.group_size),
        "conv 1": (n, c1, f.n_bins, f.group_size), "conv 2": (n, c2, h2, w2),
        "conv 3": (n, c3, h2, w2), "conv 4": (n, c4, h4, w4), "conv 5": (n, c5, h5, w5),
        "embeddings": (batch, f.n_groups, config.embed_dim),
        "z": (batch, f.n_groups, config.latent_dim), "q": (batch, f.n_groups, config.n_clusters),
        "r": (batch, config.n_clusters, config.cluster_dim), "g": (batch, config.cluster_dim),
        "logits": (batch, config.n_classes),
    }  # fmt: skip


def test_3_1_reference_passes(capsys) -> None:
    assert "all 12 stages right" in _passes(capsys, "3.1", stage_shapes)


def test_3_1_shapes_match_a_real_forward_pass() -> None:
    from cyclelib.exercises.ch03 import stage_shapes as real

    model = CycleGuardian(ModelConfig.small()).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 84, 688))
    assert real(ModelConfig.small(), 2)["q"] == tuple(out.q.shape)
    assert real(ModelConfig.small(), 2)["conv 5"] == (90, 32, 10, 2)


def test_3_1_forgotten_circular_padding_fails(capsys) -> None:
    def unpadded(config, batch):
        shapes = stage_shapes(config, batch)
        shapes["conv 5"] = (*shapes["conv 5"][:2], 9, 1)
        return shapes

    _fails(capsys, "3.1", unpadded, "pads circularly")


def test_3_1_groups_not_flattened_fails(capsys) -> None:
    def per_cycle(config, batch):
        shapes = stage_shapes(config, batch)
        shapes["conv 2"] = (batch, config.n_groups, *shapes["conv 2"][1:])
        return shapes

    _fails(capsys, "3.1", per_cycle, "flatten cycles and groups")


def test_3_1_numbers_copied_from_the_small_network_fail_on_the_faithful(capsys) -> None:
    small = stage_shapes(ModelConfig.small(), 4)
    _fails(capsys, "3.1", lambda config, batch: small, "faithful config, batch 2")


def test_3_1_missing_stage_and_stub(capsys) -> None:
    _fails(capsys, "3.1", lambda c, b: {"groups": (1,)}, "lacks the stage")
    _not_done(capsys, "3.1", lambda config, batch: None)
    _not_done(capsys, "3.1", ...)


# ---- 3.2 DEC's soft assignment q and its target p -------------------------------------------


def soft_assignment(z: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    kernel = 1.0 / (1.0 + (z.unsqueeze(-2) - centres).pow(2).sum(-1))
    return kernel / kernel.sum(-1, keepdim=True)


def target(q: torch.Tensor) -> torch.Tensor:
    weight = q.pow(2) / q.sum(-2, keepdim=True)
    return weight / weight.sum(-1, keepdim=True)


def test_3_2_reference_passes(capsys) -> None:
    assert "p is sharper" in _passes(capsys, "3.2", (soft_assignment, target))


def test_3_2_q_normalised_over_the_groups_fails(capsys) -> None:
    def over_groups(z, centres):
        kernel = 1.0 / (1.0 + (z.unsqueeze(-2) - centres).pow(2).sum(-1))
        return kernel / kernel.sum(-2, keepdim=True)

    _fails(capsys, "3.2", (over_groups, target), "must sum to 1 over the K clusters")


def test_3_2_gaussian_kernel_fails(capsys) -> None:
    def gaussian(z, centres):
        kernel = torch.exp(-(z.unsqueeze(-2) - centres).pow(2).sum(-1) / 10)
        return kernel / kernel.sum(-1, keepdim=True)

    _fails(capsys, "3.2", (gaussian, target), "q (Student-t kernel")


def test_3_2_target_without_cluster_frequency_fails(capsys) -> None:
    def squared_only(q):
        return q.pow(2) / q.pow(2).sum(-1, keepdim=True)

    _fails(capsys, "3.2", (soft_assignment, squared_only), "divide q² by f_k")


def test_3_2_frequency_over_the_clusters_fails(capsys) -> None:
    def wrong_axis(q):
        weight = q.pow(2) / q.sum(-1, keepdim=True)
        return weight / weight.sum(-1, keepdim=True)

    _fails(capsys, "3.2", (soft_assignment, wrong_axis), "divide q² by f_k")


def test_3_2_cyclelib_itself_and_stubs(capsys) -> None:
    _fails(capsys, "3.2", (soft_assignment, target_distribution), "write p from its formula")
    _not_done(capsys, "3.2", (lambda z, c: None, lambda q: None))
    _not_done(capsys, "3.2", (soft_assignment, lambda q: None))


# ---- 3.3 the parameter count of one layer by hand ---------------------------------------------


def layer_parameters(config: ModelConfig) -> dict[str, int]:
    c1, c2, c5 = config.channels[0], config.channels[1], config.channels[-1]
    dense = config.dense_dim
    return {"conv 2": c2 * c1 * 3 * 3 + c2 + 2 * c2,  # weight, bias, BatchNorm's γ and β
            "dense": c5 * 10 * 2 * dense + dense + 2 * dense}


def test_3_3_reference_passes(capsys) -> None:
    assert "5,245,952" in _passes(capsys, "3.3", layer_parameters)


def test_3_3_forgotten_batchnorm_fails(capsys) -> None:
    def no_norm(config):
        return {**layer_parameters(config),
                "conv 2": layer_parameters(config)["conv 2"] - 2 * config.channels[1]}

    _fails(capsys, "3.3", no_norm, "γ and β")


def test_3_3_running_statistics_counted_fails(capsys) -> None:
    def with_buffers(config):
        return {**layer_parameters(config),
                "dense": layer_parameters(config)["dense"] + 2 * config.dense_dim}

    _fails(capsys, "3.3", with_buffers, "buffers, not parameters")


def test_3_3_input_without_circular_padding_fails(capsys) -> None:
    def unpadded(config):
        c5, dense = config.channels[-1], config.dense_dim
        return {**layer_parameters(config), "dense": c5 * 9 * 1 * dense + 3 * dense}

    _fails(capsys, "3.3", unpadded, "after circular padding")


def test_3_3_stub(capsys) -> None:
    _not_done(capsys, "3.3", lambda config: {"conv 2": ..., "dense": ...})
    _not_done(capsys, "3.3", lambda config: None)


# ---- 5.1 symmetric per-channel int8 ------------------------------------------------------------


def quantise_per_channel(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scale = w.abs().flatten(1).amax(1) / 127
    q = torch.round(w / scale.reshape(-1, *[1] * (w.ndim - 1))).clamp(-127, 127)
    return q, scale


@pytest.fixture(scope="module")
def weight() -> torch.Tensor:
    torch.manual_seed(0)
    return CycleGuardian(ModelConfig.small()).encoder.dense[1].weight.detach()


def _max_error(function, w: torch.Tensor) -> float:
    q, scale = function(w)
    return float((q * scale.reshape(-1, *[1] * (w.ndim - 1)) - w).abs().max())


def test_5_1_reference_passes(capsys, weight) -> None:
    answer = (quantise_per_channel, weight, _max_error(quantise_per_channel, weight))
    assert "half a step" in _passes(capsys, "5.1", answer)


def test_5_1_one_scale_per_tensor_fails(capsys, weight) -> None:
    def per_tensor(w):
        scale = w.abs().max() / 127
        return torch.round(w / scale), scale

    _fails(capsys, "5.1", (per_tensor, weight, 0.001), "one per output channel")


def test_5_1_scale_of_128_levels_fails(capsys, weight) -> None:
    def by_128(w):
        q, scale = quantise_per_channel(w)
        return q, scale * 127 / 128

    _fails(capsys, "5.1", (by_128, weight, 0.001), "max|w| / 128")


def test_5_1_truncation_fails(capsys, weight) -> None:
    def truncated(w):
        q, scale = quantise_per_channel(w)
        return torch.trunc(w / scale.reshape(-1, *[1] * (w.ndim - 1))), scale

    _fails(capsys, "5.1", (truncated, weight, 0.001), "round it to the nearest")


def test_5_1_mean_error_fails(capsys, weight) -> None:
    q, scale = quantise_per_channel(weight)
    mean = float((q * scale[:, None] - weight).abs().mean())
    _fails(capsys, "5.1", (quantise_per_channel, weight, mean), "not the mean")


def test_5_1_torch_quantize_per_channel_is_refused(capsys, weight) -> None:
    def by_torch(w):
        scale = w.abs().flatten(1).amax(1) / 127
        zero = torch.zeros(len(w), dtype=torch.long)
        q = torch.quantize_per_channel(w, scale.double(), zero, 0, torch.qint8)
        return q.int_repr(), scale

    _fails(capsys, "5.1", (by_torch, weight, 0.001), "compute scale and q by hand")


def test_5_1_stub(capsys, weight) -> None:
    _not_done(capsys, "5.1", (lambda w: None, weight, ...))
    _not_done(capsys, "5.1", (quantise_per_channel, weight, ...))


# ---- 5.2 the .pte against eager -----------------------------------------------------------------


def run_pte(path, wave: np.ndarray) -> np.ndarray:
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(Path(path)).load_method("forward")
    return method.execute([torch.from_numpy(wave).reshape(1, -1)])[0][0].numpy()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """An untrained small network's fp32 .pte (about a minute on 2 cores), its module, a cycle."""
    pytest.importorskip("executorch.runtime")
    from cyclelib.export import FILES, CycleGuardianInference, export_files

    torch.manual_seed(0)
    inference = CycleGuardianInference(CycleGuardian(ModelConfig.small()))
    out = tmp_path_factory.mktemp("pte")
    export_files(inference, out, pte=True, progress=False)
    wave = (np.random.default_rng(0).standard_normal(176_000) * 0.1).astype(np.float32)
    return {"path": out / FILES["pte_fp32"], "wave": wave, "eager": inference}


@pytest.mark.slow
def test_5_2_reference_passes(capsys, exported) -> None:
    assert "≤ 1e-4" in _passes(capsys, "5.2", {"run_pte": run_pte, **exported})


@pytest.mark.slow
def test_5_2_typical_mistakes_fail(capsys, exported) -> None:
    from executorch.runtime import Runtime

    def softmax_again(path, wave):
        return torch.softmax(torch.from_numpy(run_pte(path, wave)), -1).numpy()

    def unbatched(path, wave):
        method = Runtime.get().load_program(Path(path)).load_method("forward")
        return method.execute([torch.from_numpy(wave)])[0][0].numpy()

    _fails(capsys, "5.2", {**exported, "run_pte": softmax_again}, "softmax applied twice")
    _fails(capsys, "5.2", {**exported, "run_pte": lambda p, w: run_pte(p, w)[None]}, "(1, 4)")
    _fails(capsys, "5.2", {**exported, "run_pte": unbatched}, "shape (1, 176000)")
    other = (np.random.default_rng(1).standard_normal(176_000) * 0.3).astype(np.float32)
    _fails(capsys, "5.2", {**exported, "run_pte": lambda p, w: run_pte(p, other)},
           "differ from eager")


@pytest.mark.slow
def test_5_2_cyclelib_wrapper_is_refused_and_stub(capsys, exported) -> None:
    def wrapped(path, wave):
        from cyclelib.export import MobileClassifier

        return MobileClassifier.load(path).predict_proba(wave, 22_000)

    _fails(capsys, "5.2", {**exported, "run_pte": wrapped}, "executorch.runtime.Runtime")
    _not_done(capsys, "5.2", {**exported, "run_pte": lambda path, wave: None})
