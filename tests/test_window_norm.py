"""Per-window BatchNorm statistics (DESIGN §5): the original's loop of 45 encoder calls, emulated.

The references call plain ``nn.BatchNorm`` (or the whole encoder) once per group window, as the
original did; everything is float64 and must agree to 1e-10.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from cyclelib.losses import ORIGINAL_PASSES, CycleGuardianObjective
from cyclelib.model import CycleGuardian, ModelConfig
from cyclelib.window_norm import (
    WindowBatchNorm1d,
    WindowBatchNorm2d,
    momentum_updates,
    running_stat_passes,
)

torch.set_num_threads(2)
TOL = {"rtol": 1e-10, "atol": 1e-10}


def _norm_pair(kind: str, channels: int, windows: int) -> tuple[nn.Module, nn.Module]:
    """A window norm with random affine and running values, and a plain copy of its state."""
    ours = (WindowBatchNorm2d if kind == "2d" else WindowBatchNorm1d)(channels, windows).double()
    plain = (nn.BatchNorm2d if kind == "2d" else nn.BatchNorm1d)(channels).double()
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5)
        ours.bias.normal_()
        ours.running_mean.normal_()
        ours.running_var.uniform_(0.5, 2.0)
    plain.load_state_dict(ours.state_dict())
    return ours, plain


@pytest.mark.parametrize("passes", [1, 2])
@pytest.mark.parametrize(
    ("kind", "shape", "layout"),
    [
        ("2d", (4, 5, 3, 7, 6), torch.channels_last),  # (B, K, C, H, W) as the encoder runs it
        ("2d", (4, 5, 3, 7, 6), torch.contiguous_format),
        ("1d", (4, 5, 8), torch.contiguous_format),  # the dense layer's BatchNorm1d
    ],
)
def test_layer_equals_one_plain_batchnorm_call_per_window(kind, shape, layout, passes) -> None:
    torch.manual_seed(0)
    batch, windows, channels = shape[:3]
    ours, plain = _norm_pair(kind, channels, windows)
    x = (3 * torch.randn(shape, dtype=torch.float64) + 2).flatten(0, 1)  # rows b·K + k
    x = x.contiguous(memory_format=layout).requires_grad_(True)
    grad_out = torch.randn_like(x)
    with running_stat_passes(ours, passes):
        out = ours(x)
    assert ours.passes == 1  # restored on leaving
    windows_of_x = x.unflatten(0, (batch, windows))
    expected = torch.stack([plain(windows_of_x[:, k]) for k in range(windows)], 1).flatten(0, 1)
    with torch.no_grad():  # the original's further passes over the same batch
        for _ in range(passes - 1):
            for k in range(windows):
                plain(windows_of_x[:, k])
    torch.testing.assert_close(out, expected, **TOL)
    got = torch.autograd.grad(out, [x, ours.weight, ours.bias], grad_out)
    want = torch.autograd.grad(expected, [x, plain.weight, plain.bias], grad_out)
    for name, a, b in zip(("input", "weight", "bias"), got, want, strict=True):
        torch.testing.assert_close(a, b, **TOL, msg=name)
    for name, value in plain.state_dict().items():  # running stats and num_batches_tracked
        torch.testing.assert_close(ours.state_dict()[name], value, **TOL, msg=name)
    assert int(ours.num_batches_tracked) == windows * passes


def test_momentum_updates_is_the_sequence_of_updates_in_window_order() -> None:
    stats = torch.randn(45, 6, dtype=torch.float64)
    running = torch.randn(6, dtype=torch.float64)
    expected = running.clone()
    for k in range(45):
        expected = 0.9 * expected + 0.1 * stats[k]
    closed = running.clone()
    momentum_updates(closed, stats, 0.1)
    torch.testing.assert_close(closed, expected, rtol=1e-14, atol=1e-14)
    frozen = running.clone()
    momentum_updates(frozen, stats, 0.0)  # how the recomputed stem freezes them
    assert torch.equal(frozen, running)


def test_eval_is_plain_batchnorm_with_running_statistics() -> None:
    torch.manual_seed(0)
    ours, plain = _norm_pair("2d", 3, 5)
    ours.eval(), plain.eval()
    x = torch.randn(7, 3, 4, 4, dtype=torch.float64)  # any batch in eval, not a multiple of 5
    assert torch.equal(ours(x), plain(x))
    assert ours.state_dict().keys() == plain.state_dict().keys()


@pytest.mark.parametrize("shape", [(7, 3, 4, 4), (5, 3, 1, 1)])
def test_training_needs_whole_windows_and_two_values(shape) -> None:
    with pytest.raises(ValueError, match="B·5 rows"):
        WindowBatchNorm2d(3, 5)(torch.randn(shape))


def _per_window_embed(model: CycleGuardian):
    """The original's encoder: one call per group window on the B cycles -> (B, 45, E)."""

    def embed(x: torch.Tensor) -> torch.Tensor:
        groups = model.groups(x)
        return torch.stack([model.encoder(groups[:, k]) for k in range(groups.shape[1])], 1)

    return embed


def _objectives(config: ModelConfig):
    """(ours, reference): the same float64 weights; the reference has plain BatchNorms and runs
    its encoder once per window."""
    torch.manual_seed(0)
    ours = CycleGuardianObjective(CycleGuardian(config)).double()
    reference = CycleGuardianObjective(
        CycleGuardian(dataclasses.replace(config, window_stats=False))
    ).double()
    reference.load_state_dict(ours.state_dict())
    reference.model.embed = _per_window_embed(reference.model)
    return ours, reference


def _step(objective, optimizer, x, labels, seed: int, extra_passes: int = 0):
    """One training step; ``extra_passes`` more encoder passes update the running statistics
    (the reference's stand-in for the original's group-mix pass)."""
    terms, out = objective(x, labels, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        for _ in range(extra_passes):
            objective.model.embed(x)
    optimizer.zero_grad(set_to_none=True)
    terms["total"].backward()
    grads = {name: p.grad.clone() for name, p in objective.named_parameters()}
    optimizer.step()
    return terms, out, grads


@pytest.mark.parametrize("faithful_options", [False, True], ids=["small", "recompute+tap"])
def test_training_steps_equal_the_original_per_window_loop(faithful_options: bool) -> None:
    config = dataclasses.replace(ModelConfig.small(), window_stats=True)  # off by default
    if faithful_options:  # the faithful config's recomputed stem and tap-gradient last conv
        config = dataclasses.replace(config, recompute_stem=True, tap_grad_last_conv=True)
    ours, reference = _objectives(config)
    # SGD, not Adam: Adam's step lr·g/(|g| + 1e-8) would turn the rounding noise of gradients
    # that are zero in exact arithmetic (conv biases before a BatchNorm) into steps of 1e-10
    optimizers = [torch.optim.SGD(o.parameters(), lr=0.1) for o in (ours, reference)]
    labels = torch.tensor([0, 1, 2])
    for step in range(2):
        x = torch.randn(3, 3, 84, 688, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(step))
        terms, out, grads = _step(ours, optimizers[0], x, labels, step)
        ref_terms, ref_out, ref_grads = _step(
            reference, optimizers[1], x, labels, step, extra_passes=ORIGINAL_PASSES - 1
        )
        for name in terms:
            torch.testing.assert_close(terms[name], ref_terms[name], **TOL, msg=name)
        for name in ("embeddings", "q", "logits"):
            torch.testing.assert_close(getattr(out, name), getattr(ref_out, name), **TOL)
        assert grads.keys() == ref_grads.keys()
        for name in grads:
            torch.testing.assert_close(grads[name], ref_grads[name], **TOL, msg=name)
        buffers = dict(reference.named_buffers())
        for name, value in ours.named_buffers():  # running statistics, 90 updates per step
            torch.testing.assert_close(value, buffers[name], **TOL, msg=f"step {step}: {name}")
        assert int(ours.model.encoder.dense[2].num_batches_tracked) == 90 * (step + 1)


def test_switch_off_keeps_plain_batchnorm_and_the_numbers_of_before() -> None:
    """Pooled statistics, exactly as before this option existed: plain BatchNorms, one update
    per step, and the float64 figures recorded at commit 4cf2f19 (bit-identical there)."""
    torch.manual_seed(0)
    config = dataclasses.replace(ModelConfig.small(), window_stats=False)
    objective = CycleGuardianObjective(CycleGuardian(config)).double()
    norms = [m for m in objective.model.encoder.modules() if "Norm" in type(m).__name__]
    assert {type(m) for m in norms} == {nn.BatchNorm2d, nn.BatchNorm1d}
    optimizer = torch.optim.Adam(objective.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 3, 84, 688, generator=torch.Generator().manual_seed(7)).double()
    losses = []
    for _ in range(2):
        terms, _ = objective(x, torch.tensor([0, 1, 2]), generator)
        optimizer.zero_grad()
        terms["total"].backward()
        optimizer.step()
        losses.append(terms["total"].item())
    state = objective.model.state_dict()
    got = [*losses, *(state[name].sum().item() for name in (
        "encoder.convs.1.running_var", "encoder.dense.2.running_mean", "classifier.weight"))]
    recorded = [2.795349070187789, 2.4882499375498535, 4.486422616428795, 0.20587288131176912,
                0.830901434410884]
    torch.testing.assert_close(torch.tensor(got), torch.tensor(recorded), rtol=1e-12, atol=0)
    assert int(state["encoder.dense.2.num_batches_tracked"]) == 2


def test_eval_and_state_dict_do_not_depend_on_the_switch() -> None:
    torch.manual_seed(0)
    per_window = CycleGuardian(dataclasses.replace(ModelConfig.small(), window_stats=True))
    pooled = CycleGuardian(dataclasses.replace(ModelConfig.small(), window_stats=False))
    pooled.load_state_dict(per_window.state_dict())  # checkpoints load either way
    x = torch.randn(2, 3, 84, 688)
    with torch.no_grad():
        per_window.train()(x)  # some running statistics to use
    pooled.load_state_dict(per_window.state_dict())
    per_window.eval(), pooled.eval()
    with torch.no_grad():
        assert torch.equal(per_window(x).logits, pooled(x).logits)
