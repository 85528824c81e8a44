"""What the network costs (DESIGN §5): trainable parameters per part, FLOPs of a forward pass.

Notebook 03's tables (:func:`cyclelib.viz.model.parameter_table` and ``config_table``) and
``benchmarks/bench_model.py`` use them; :mod:`cyclelib.model`'s docstring lists both configs'
figures.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cyclelib.model import CycleGuardian


def parameter_counts(model: CycleGuardian) -> dict[str, int]:
    """Trainable parameters per part of the network, in pipeline order (DESIGN §5)."""
    parts = {
        "group encoder: convs": model.encoder.convs.parameters(),
        "group encoder: dense": model.encoder.dense.parameters(),
        "deep clustering: z projection": model.clustering.project.parameters(),
        "deep clustering: centres": [model.clustering.centres],
        "cluster fusion: groups -> r_k": model.fusion.group_fusion.parameters(),
        "cluster fusion: r -> g": model.fusion.cluster_fusion.parameters(),
        "classifier": model.classifier.parameters(),
        "similarity matrix S": [model.similarity],
    }
    return {name: sum(p.numel() for p in params) for name, params in parts.items()}


def count_flops(model: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one forward pass on ``x`` (eval mode, no grad), as torch.utils.flop_counter counts.

    Divide by the batch size for FLOPs per cycle; the faithful network needs about 1.84 GFLOP.
    """
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops()
