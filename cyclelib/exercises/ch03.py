"""The checks of notebook 03's exercises (docs/teaching.md).

- 3.1 the tensor shape after each block (DESIGN §5): the learner's shapes, worked out from a
  :class:`~cyclelib.model.ModelConfig` and a batch size, against the shapes the real modules
  produce on that batch (run on PyTorch's ``meta`` device: shapes without arithmetic).
- 3.2 DEC's soft assignment q and its target p (DESIGN §5): against
  :class:`~cyclelib.model.DeepClustering` and :func:`cyclelib.losses.target_distribution` on
  the same z and centres.
- 3.3 the parameter count of one layer by hand: against ``sum(p.numel())`` of the real layers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from cyclelib.exercises._core import NotDone, Wrong, call, exercise, expect_close
from cyclelib.losses import target_distribution
from cyclelib.model import CycleGuardian, DeepClustering, ModelConfig

# The stages of exercise 3.1, in pipeline order (the encoder's stages are per group, B·45 rows).
STAGES = ("groups", "conv 1", "conv 2", "conv 3", "conv 4", "conv 5", "embeddings", "z", "q",
          "r", "g", "logits")  # fmt: skip
# (config, batch) pairs 3.1 and 3.3 are checked on: the notebook's small network and the
# faithful one, so that an answer must follow the configuration, not copy printed numbers.
CASES = (("small", 4), ("faithful", 2))


def stage_shapes(config: ModelConfig, batch: int) -> dict[str, tuple[int, ...]]:
    """The shape after every stage of :data:`STAGES` for ``batch`` cycles, from the real modules.

    The network runs on the ``meta`` device (no memory, no arithmetic): "groups" is the
    encoder's input (B·45, 3, 84, 20), "conv k" the output of the k-th conv-BatchNorm-ReLU of
    the group encoder (B·45, C_k, H_k, W_k), then the fields of ``CycleGuardianOutput``.
    """
    f = config.features
    shapes: dict[str, tuple[int, ...]] = {}
    with torch.device("meta"):
        model = CycleGuardian(config).eval()
        convs = [m for m in model.encoder.convs if isinstance(m, nn.Conv2d)]
        hooks = [conv.register_forward_hook(_recorder(shapes, f"conv {k}"))
                 for k, conv in enumerate(convs, 1)]  # fmt: skip
        try:
            out = model(torch.empty(batch, config.in_channels, f.n_bins, f.n_frames))
        finally:
            for hook in hooks:
                hook.remove()
    shapes["groups"] = (batch * f.n_groups, config.in_channels, f.n_bins, f.group_size)
    shapes.update({name: tuple(getattr(out, name).shape) for name in STAGES[6:]})
    return {name: shapes[name] for name in STAGES}


def _recorder(shapes: dict[str, tuple[int, ...]], name: str) -> Callable[..., None]:
    def record(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        shapes[name] = tuple(output.shape)

    return record


def _as_shape(value: Any) -> tuple[int, ...] | None:
    try:
        return tuple(int(n) for n in value)
    except (TypeError, ValueError):
        return None


@exercise("3.1", "the tensor shape after each block")
def check_shapes(answer: Any) -> str:
    """``answer``: a function (config, batch) -> {stage: shape tuple} for every stage of STAGES."""
    for name, batch in CASES:
        config = getattr(ModelConfig, name)()
        got = call(answer, config, batch)
        if not isinstance(got, dict):
            raise Wrong(f"expected a dict {{stage: shape}}, got {type(got).__name__}")
        if any(v is ... or v is None for v in got.values()):
            raise NotDone
        missing = [stage for stage in STAGES if stage not in got]
        if missing:
            raise Wrong(f"the dict lacks the stage(s) {', '.join(map(repr, missing))}")
        want = stage_shapes(config, batch)
        for stage in STAGES:
            shape = _as_shape(got[stage])
            if shape != want[stage]:
                raise Wrong(f"{name} config, batch {batch}: {stage!r} should be "
                            f"{want[stage]}, got {got[stage]!r}{_shape_hint(stage, shape, want)}")
    return f"all {len(STAGES)} stages right for the small and the faithful network"


def _shape_hint(stage: str, got: tuple[int, ...] | None, want: dict) -> str:
    """A pointer to the usual mistake behind a wrong shape (empty when none is recognised)."""
    right = want[stage]
    if got is None or len(got) != len(right):
        if stage.startswith(("groups", "conv")) and got is not None and len(got) == 5:
            return " (the encoder sees the B·45 groups as one batch: flatten cycles and groups)"
        return f" (it has {len(right)} axes)"
    if stage.startswith("conv") and got[:2] == right[:2]:
        if stage == "conv 5":
            return (" (the last conv pads circularly by 1 on each side before its 3×3 stride-2 "
                    "kernel: (n + 2 − 3) // 2 + 1)")
        return " (an unpadded k×k conv of stride s gives (n − k) // s + 1)"
    if got[0] != right[0]:
        return " (check the first axis: cycles B, or B·45 groups inside the encoder)"
    return ""


@exercise("3.2", "DEC's soft assignment q and its target p")
def check_dec(answer: Any) -> str:
    """``answer``: (soft_assignment, target) functions: (z (B, G, D), centres (K, D)) -> q
    (B, G, K) and q -> p (B, G, K); compared with cyclelib's DEC on the same tensors."""
    if not isinstance(answer, tuple | list) or len(answer) != 2:
        raise Wrong("expected the pair (soft_assignment, target), two functions")
    soft_assignment, target = answer
    if target is target_distribution:
        raise Wrong("target is cyclelib's own target_distribution: write p from its formula")
    generator = torch.Generator().manual_seed(3)
    z = torch.randn(2, 45, 8, generator=generator) * 2.0  # spread out, unlike an untrained z
    centres = torch.randn(4, 8, generator=generator) * 2.0
    clustering = DeepClustering(ModelConfig(embed_dim=8, latent_dim=8, n_clusters=4))
    clustering.project = nn.Identity()  # z given directly
    with torch.no_grad():
        clustering.centres.copy_(centres)
        q_ref = clustering(z)[1]
    p_ref = target_distribution(q_ref)
    q = _numbers(call(soft_assignment, z.clone(), centres.clone()), "q", q_ref.shape)
    if not np.isfinite(q).all():
        raise Wrong("q holds NaN or infinite values (a kernel that underflows to 0 gives 0/0; "
                    "DEC's Student-t kernel (1 + ‖z − μ‖²)^-1 never does)")
    if not np.allclose(q.sum(-1), 1.0, atol=1e-4):
        raise Wrong("each row of q must sum to 1 over the K clusters: divide the kernel by its "
                    "sum over k (the last axis), not over the groups")
    expect_close(q, q_ref, "q (Student-t kernel (1 + ‖z − μ‖²)^-1, then normalised over k)",
                 atol=1e-6)
    p = _numbers(call(target, q_ref.clone()), "p", q_ref.shape)
    squared = q_ref.pow(2) / q_ref.pow(2).sum(-1, keepdim=True)
    if np.allclose(p, squared.numpy(), atol=1e-6):
        raise Wrong("p must also divide q² by f_k = Σ_i q_ik, the cluster's total over the 45 "
                    "groups of the cycle (axis -2), before normalising over k")
    if not np.allclose(p.sum(-1), 1.0, atol=1e-4):
        raise Wrong("each row of p must sum to 1 over the K clusters: normalise q²/f over k")
    expect_close(p, p_ref, "p (q²/f_k with f_k summed over the groups, normalised over k)",
                 atol=1e-6)
    sharper = float((p_ref.max(-1).values - q_ref.max(-1).values).mean())
    return f"q and p equal DeepClustering's and target_distribution's (p is sharper: the " \
           f"largest share of a group grows by {sharper:.3f} on average)"


def _numbers(value: Any, what: str, shape: torch.Size) -> np.ndarray:
    """``value`` as a float array of ``shape``; Wrong saying what came back otherwise."""
    try:
        array = np.asarray(value.detach() if hasattr(value, "detach") else value, dtype=float)
    except (TypeError, ValueError):
        raise Wrong(f"{what}: expected a tensor, got {type(value).__name__}") from None
    if array.shape != tuple(shape):
        raise Wrong(f"{what}: expected shape {tuple(shape)}, got {array.shape}")
    return array


def layer_parameters(config: ModelConfig) -> dict[str, int]:
    """Parameters of two layers of the group encoder, from the real modules (meta device):
    "conv 2" its second conv (3×3, stride 2) with its BatchNorm, "dense" its first linear layer
    (flattened conv output -> dense_dim) with its BatchNorm1d."""
    with torch.device("meta"):
        encoder = CycleGuardian(config).encoder
    parts = {"conv 2": encoder.convs[3:5], "dense": encoder.dense[1:3]}
    return {name: sum(p.numel() for p in part.parameters()) for name, part in parts.items()}


@exercise("3.3", "the parameter count of one layer by hand")
def check_parameters(answer: Any) -> str:
    """``answer``: a function config -> {"conv 2": int, "dense": int}, counted from the shapes."""
    for name, _ in CASES:
        config = getattr(ModelConfig, name)()
        got = call(answer, config)
        if not isinstance(got, dict) or set(got) != {"conv 2", "dense"}:
            raise Wrong(f"expected a dict with the keys 'conv 2' and 'dense', got {got!r}")
        if any(v is ... or v is None for v in got.values()):
            raise NotDone
        want = layer_parameters(config)
        for layer, count in want.items():
            if got[layer] != count:
                raise Wrong(f"{name} config, {layer!r}: off by {got[layer] - count:+,}"
                            f"{_count_hint(layer, got[layer] - count, config)}")
    faithful = layer_parameters(ModelConfig.faithful())
    return f"conv 2: {faithful['conv 2']:,} and dense: {faithful['dense']:,} parameters in the " \
           f"faithful network"


def _count_hint(layer: str, off: Any, config: ModelConfig) -> str:
    """The usual mistake behind a count that is ``off`` (empty when none is recognised)."""
    width = config.channels[1] if layer == "conv 2" else config.dense_dim
    hints = {
        -width: " (one bias per output, or BatchNorm's γ and β: count each once)",
        -2 * width: " (BatchNorm has two learnable vectors, γ and β, one value per channel)",
        -3 * width: " (the bias, and BatchNorm's γ and β)",
        2 * width: " (BatchNorm's running mean and variance are buffers, not parameters)",
    }
    unpadded = config.channels[-1] * 9 * 1  # the last conv's output without circular padding
    if layer == "dense" and off == (unpadded - _flat_width(config)) * config.dense_dim:
        return " (its input is the last conv's output flattened, C·H·W, after circular padding)"
    return hints.get(off, "")


def _flat_width(config: ModelConfig) -> int:
    """Input width of the encoder's dense layer: C5·H·W of the last conv's output."""
    with torch.device("meta"):
        return CycleGuardian(config).encoder.dense[1].in_features
