"""The CycleGuardian network (DESIGN §5): sizes, shapes, clustering, fusion, export."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cyclelib.layers import CircularPad, TapGradConv2d
from cyclelib.losses import CycleGuardianObjective
from cyclelib.model import (
    ClusterFusion,
    CycleGuardian,
    DeepClustering,
    LogitsOnly,
    ModelConfig,
)
from cyclelib.model_size import count_flops, parameter_counts

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def small() -> CycleGuardian:
    torch.manual_seed(0)
    return CycleGuardian(ModelConfig.small())


def spectrograms(batch: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, 84, 688, generator=torch.Generator().manual_seed(seed))


def test_faithful_parameter_count_by_hand() -> None:
    model = CycleGuardian(ModelConfig.faithful())
    convs = (
        (3 * 16 + 16 + 2 * 16)  # 1x1 conv 3->16 with bias, BatchNorm weight and bias
        + (16 * 32 * 9 + 32 + 2 * 32)  # 3x3 conv 16->32
        + (32 * 64 + 64 + 2 * 64)  # 1x1 conv 32->64
        + (64 * 128 * 9 + 128 + 2 * 128)  # 3x3 conv 64->128
        + (128 * 256 * 9 + 256 + 2 * 256)  # 3x3 circular conv 128->256
    )
    dense = (256 * 10 * 2 * 1024 + 1024) + 2 * 1024 + (1024 * 768 + 768)
    clustering = (768 * 128 + 128) + 4 * 128  # z projection, centres
    fusion = (45 + 1) + 2 * 768 + (768 * 128 + 128) + 2 * 128  # group axis conv, LN, linear, LN
    fusion += (4 + 1) + 2 * 128  # cluster axis conv, LN
    head = 128 * 4 + 4 + 128 * 128  # classifier, similarity matrix S
    expected = convs + dense + clustering + fusion + head
    assert expected == 6_626_359  # DESIGN §5: the original's 6,790,967 minus decoder and gate
    assert sum(p.numel() for p in model.parameters()) == expected
    counts = parameter_counts(model)
    assert sum(counts.values()) == expected
    assert counts["group encoder: convs"] == convs
    assert counts["group encoder: dense"] == dense
    assert counts["similarity matrix S"] == 128 * 128


def test_faithful_output_shapes() -> None:
    model = CycleGuardian(ModelConfig.faithful())
    out = model(spectrograms(2))
    shapes = {name: tuple(t.shape) for name, t in out._asdict().items()}
    assert shapes == {
        "logits": (2, 4),
        "g": (2, 128),
        "embeddings": (2, 45, 768),
        "z": (2, 45, 128),
        "q": (2, 45, 4),
        "r": (2, 4, 128),
    }
    again = model.forward_from_embeddings(out.embeddings)
    assert tuple(again.logits.shape) == (2, 4)


def test_faithful_flops_match_the_layer_arithmetic() -> None:
    per_group = (
        84 * 20 * 3 * 16  # multiply-adds of the 1x1 conv at 84x20
        + 41 * 9 * 16 * 32 * 9  # 3x3 stride 2 -> 41x9
        + 41 * 9 * 32 * 64  # 1x1
        + 20 * 4 * 64 * 128 * 9  # 3x3 stride 2 -> 20x4
        + 10 * 2 * 128 * 256 * 9  # 3x3 stride 2 circular -> 10x2
        + 5120 * 1024
        + 1024 * 768
    )
    rest = 45 * 768 * 128 + 4 * (45 * 768 + 768 * 128) + 4 * 128 + 128 * 4
    flops = count_flops(CycleGuardian(ModelConfig.faithful()), spectrograms(1))
    assert flops == 2 * (45 * per_group + rest)
    assert 1.8e9 < flops < 1.9e9  # "about 1.85 GFLOP per cycle" (DESIGN §5)


def test_circular_pad_matches_torch_circular_padding() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 5, 3, stride=2, padding=1, padding_mode="circular")
    x = torch.randn(2, 4, 20, 4)
    padded = CircularPad()(x)
    assert tuple(padded.shape) == (2, 4, 22, 6)
    torch.testing.assert_close(padded[:, :, 0, 1:-1], x[:, :, -1])  # wraps rows and columns
    torch.testing.assert_close(padded[:, :, 1:-1, -1], x[:, :, :, 0])
    torch.testing.assert_close(F.conv2d(padded, conv.weight, conv.bias, stride=2), conv(x))


@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_circular_pad_backward_matches_autograd_through_torch_padding(layout) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64).contiguous(memory_format=layout)
    x.requires_grad_(True)
    grad_out = torch.randn(2, 3, 7, 6, dtype=torch.float64).contiguous(memory_format=layout)
    (ours,) = torch.autograd.grad(CircularPad()(x), x, grad_out)
    (reference,) = torch.autograd.grad(F.pad(x, (1, 1, 1, 1), mode="circular"), x, grad_out)
    torch.testing.assert_close(ours, reference)  # corners collect three wrapped copies
    assert ours.is_contiguous(memory_format=layout)  # channels-last in, channels-last out


@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
@pytest.mark.parametrize("bias", [True, False])
def test_tap_grad_conv_matches_autograd_through_conv2d(layout, bias: bool) -> None:
    torch.manual_seed(0)
    reference = nn.Conv2d(6, 10, 3, stride=2, bias=bias).double()
    ours = TapGradConv2d(6, 10, 3, stride=2, bias=bias).double()
    ours.load_state_dict(reference.state_dict())  # same parameter names: checkpoints load
    x = torch.randn(3, 6, 22, 6, dtype=torch.float64).contiguous(memory_format=layout)
    x.requires_grad_(True)
    grad_out = torch.randn(3, 10, 10, 2, dtype=torch.float64)
    out = ours(x)
    assert out.grad_fn is not None and "TapGradConv" in type(out.grad_fn).__name__
    torch.testing.assert_close(out, reference(x))
    expected = torch.autograd.grad(reference(x), [x, *reference.parameters()], grad_out)
    got = torch.autograd.grad(out, [x, *ours.parameters()], grad_out)
    for name, a, b in zip(["input", "weight", "bias"][: len(got)], got, expected, strict=True):
        torch.testing.assert_close(a, b, msg=name)
    assert got[1].shape == (10, 6, 3, 3)


def test_tap_grad_conv_is_plain_conv_in_eval_and_honours_frozen_weights() -> None:
    torch.manual_seed(0)
    conv = TapGradConv2d(4, 8, 3, stride=2).double()
    x = torch.randn(2, 4, 9, 7, dtype=torch.float64, requires_grad=True)
    conv.eval()  # evaluation and export trace the plain convolution
    assert "TapGradConv" not in type(conv(x).grad_fn).__name__
    conv.train()
    conv.weight.requires_grad_(False)
    out = conv(x)
    (grad_x,) = torch.autograd.grad(out.sum(), x)
    (expected,) = torch.autograd.grad(F.conv2d(x, conv.weight, conv.bias, stride=2).sum(), x)
    torch.testing.assert_close(grad_x, expected)
    assert conv.weight.grad is None


def test_tap_grad_conv_rejects_padding() -> None:
    with pytest.raises(ValueError, match="padding=0"):
        TapGradConv2d(4, 8, 3, padding=1)


def _one_step(config: ModelConfig, x: torch.Tensor, labels: torch.Tensor):
    """Loss, parameter gradients and model after one backward of the total loss (seed 0)."""
    torch.manual_seed(0)
    objective = CycleGuardianObjective(CycleGuardian(config)).to(x.dtype)
    terms, _ = objective(x, labels, torch.Generator().manual_seed(0))
    terms["total"].backward()
    grads = {n: p.grad for n, p in objective.named_parameters()}
    return terms["total"], grads, objective.model


def test_tap_grad_last_conv_gives_the_same_step() -> None:
    x, labels = spectrograms(2, seed=3).double(), torch.arange(2)
    runs = [
        _one_step(dataclasses.replace(ModelConfig.small(), tap_grad_last_conv=tap), x, labels)
        for tap in (False, True)
    ]
    (_, grads_a, model_a), (_, grads_b, model_b) = runs
    assert not isinstance(model_a.encoder.convs[13], TapGradConv2d)
    assert isinstance(model_b.encoder.convs[13], TapGradConv2d)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], msg=name)


def test_recomputed_stem_gives_the_same_step() -> None:
    x, labels = spectrograms(4, seed=5), torch.arange(4)
    runs = [
        _one_step(dataclasses.replace(ModelConfig.small(), recompute_stem=recompute), x, labels)
        for recompute in (False, True)
    ]
    (loss_a, grads_a, model_a), (loss_b, grads_b, model_b) = runs
    torch.testing.assert_close(loss_a, loss_b)
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], msg=name)
    state_a, state_b = model_a.encoder.state_dict(), model_b.encoder.state_dict()
    for name in state_a:  # BatchNorm running statistics are updated once, not twice
        torch.testing.assert_close(state_a[name], state_b[name], msg=name)


def test_small_config_keeps_the_structure(small: CycleGuardian) -> None:
    faithful = ModelConfig.faithful()
    config = small.config
    assert (
        (config.n_groups, config.n_clusters, config.cluster_dim, config.n_classes)
        == (
            faithful.n_groups,
            faithful.n_clusters,
            faithful.cluster_dim,
            faithful.n_classes,
        )
        == (45, 4, 128, 4)
    )
    assert sum(p.numel() for p in small.parameters()) < 6_626_359 / 20
    assert count_flops(small, spectrograms(1)) < 1.85e9 / 20
    out = small(spectrograms(3))
    assert tuple(out.embeddings.shape) == (3, 45, config.embed_dim)
    assert tuple(out.g.shape) == (3, 128) and tuple(out.r.shape) == (3, 4, 128)


def test_spectrogram_and_groups_give_the_same_output(small: CycleGuardian) -> None:
    x = spectrograms(2, seed=1)
    groups = small.groups(x)
    assert tuple(groups.shape) == (2, 45, 3, 84, 20)
    for g in (0, 17, 44):  # group g covers frames 15g .. 15g+19 (DESIGN §4)
        torch.testing.assert_close(groups[:, g], x[..., 15 * g : 15 * g + 20], rtol=0, atol=0)
    small.eval()
    with torch.no_grad():
        torch.testing.assert_close(small(x).logits, small(groups.contiguous()).logits)
    small.train()


@pytest.mark.parametrize(
    "shape", [(2, 3, 84, 687), (2, 84, 688), (2, 1, 84, 688), (2, 44, 3, 84, 20), (45, 3, 84, 20)]
)
def test_wrong_input_shape_names_the_expected_shapes(small: CycleGuardian, shape) -> None:
    with pytest.raises(ValueError, match=r"\(B, 3, 84, 688\).*\(B, 45, 3, 84, 20\)"):
        small(torch.zeros(shape))


def test_wrong_embedding_shape(small: CycleGuardian) -> None:
    with pytest.raises(ValueError, match=r"\(B, 45, 128\)"):
        small.forward_from_embeddings(torch.zeros(2, 45, 768))


def test_student_t_assignment_by_hand() -> None:
    clustering = DeepClustering(ModelConfig(embed_dim=2, latent_dim=2, n_clusters=2))
    with torch.no_grad():
        clustering.project[0].weight.copy_(torch.eye(2))
        clustering.project[0].bias.zero_()
        clustering.centres.copy_(torch.tensor([[0.0, 0.0], [3.0, 4.0]]))
    z, q = clustering(torch.tensor([[[1.0, 0.0], [3.0, 3.0]]]))
    # group 0: z = (1, 0), squared distances 1 and 4 + 16 = 20 -> weights 1/2 and 1/21
    # group 1: z = (3, 3), squared distances 18 and 1 -> weights 1/19 and 1/2
    expected = [
        [0.5 / (0.5 + 1 / 21), (1 / 21) / (0.5 + 1 / 21)],
        [(1 / 19) / (1 / 19 + 0.5), 0.5 / (1 / 19 + 0.5)],
    ]
    torch.testing.assert_close(q, torch.tensor([expected]))
    torch.testing.assert_close(z, torch.tensor([[[1.0, 0.0], [3.0, 3.0]]]))


def test_rows_of_q_sum_to_one(small: CycleGuardian) -> None:
    q = small(spectrograms(3, seed=2)).q
    assert bool((q > 0).all())
    torch.testing.assert_close(q.sum(-1), torch.ones(3, 45))


def test_cluster_vector_only_sees_its_own_groups() -> None:
    torch.manual_seed(0)
    fusion = ClusterFusion(ModelConfig.small())
    e = torch.randn(2, 45, 128)
    q = torch.softmax(torch.randn(2, 45, 4), -1)
    q[:, :, 3] = 0.0  # cluster 3 takes no group: its r_3 must still be finite
    assigned = q.argmax(-1)
    r, g = fusion(e, q)
    moved = e.clone()
    group = int((assigned[0] == 0).nonzero()[0])  # a group of sample 0 that belongs to cluster 0
    moved[0, group] += 10.0
    r2, _ = fusion(moved, q)
    assert not torch.allclose(r2[0, 0], r[0, 0])
    torch.testing.assert_close(r2[0, 1:], r[0, 1:], rtol=0, atol=0)
    torch.testing.assert_close(r2[1], r[1], rtol=0, atol=0)
    assert bool(torch.isfinite(r).all() and torch.isfinite(g).all())
    # an empty cluster sees only the conv bias: a constant row, so LayerNorm gives its bias
    # (zero at initialisation), then linear, GELU, LayerNorm
    empty = fusion.group_fusion[3:](fusion.group_fusion[2].bias)
    torch.testing.assert_close(r[:, 3], empty.expand(2, -1))


def test_fusion_convs_start_as_averages() -> None:
    fusion = ClusterFusion(ModelConfig.small())
    for conv, n in ((fusion.group_fusion[0], 45), (fusion.cluster_fusion[0], 4)):
        torch.testing.assert_close(conv.weight, torch.full_like(conv.weight, 1.0 / n))
        assert conv.weight.requires_grad and not conv.bias.any()


def test_export_logits_only_matches_eager(small: CycleGuardian) -> None:
    model = LogitsOnly(small).eval()
    x = spectrograms(2, seed=3)
    batch = torch.export.Dim("batch", min=1, max=1024)
    exported = torch.export.export(model, (x,), dynamic_shapes={"x": {0: batch}})
    y = spectrograms(3, seed=4)
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(y), model(y))
    small.train()


def test_follows_the_device_of_its_input() -> None:
    # On the meta device every tensor is shape-only: a tensor made inside forward on a fixed
    # device (the original's .cuda()) would meet a meta tensor and raise.
    model = CycleGuardian(ModelConfig.small()).to("meta")
    out = model(torch.empty(2, 3, 84, 688, device="meta"))
    assert all(t.device.type == "meta" for t in out)
    assert tuple(out.logits.shape) == (2, 4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda() -> None:
    model = CycleGuardian(ModelConfig.small()).cuda()
    out = model(spectrograms(2).cuda())
    assert out.logits.device.type == "cuda" and bool(torch.isfinite(out.logits).all())
