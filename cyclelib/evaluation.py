"""A model's ICBHI figures (DESIGN §7): predictions on a set, its scores, a saved checkpoint's.

- :func:`predict`: logits, predicted classes, global vectors and cluster assignments of a
  :class:`~cyclelib.prepare.SplitData`;
- :func:`evaluate`: Sp, Se, Score, accuracy and confusion matrix (:func:`cyclelib.metrics.
  icbhi_scores`) of those predictions: what the trainer logs after every epoch;
- :func:`evaluate_checkpoint`: the test-split figures of a ``best.pt`` or ``last.pt``
  (``cyclelib evaluate``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cyclelib.checkpoint import load_model
from cyclelib.metrics import headline, icbhi_scores
from cyclelib.model import CycleGuardian
from cyclelib.prepare import SplitData, describe_data, prepare_data, split_data
from cyclelib.results import json_safe


@torch.no_grad()
def predict(
    model: CycleGuardian, data: SplitData, batch_size: int = 64, device: str | torch.device = "cpu"
) -> dict[str, np.ndarray]:
    """Run ``model`` (eval mode) on every cycle of ``data``.

    Returns ``logits`` (N, 4), ``pred`` (N,), ``g`` (N, 128) global vectors and ``clusters``
    (N, 45) the hard cluster of each group.
    """
    was_training = model.training
    model.eval()
    parts: dict[str, list] = {"logits": [], "g": [], "clusters": []}
    for start in range(0, len(data), batch_size):
        index = np.arange(start, min(start + batch_size, len(data)))
        out = model(data.spectrograms(index).to(device))
        parts["logits"].append(out.logits.float().cpu())
        parts["g"].append(out.g.float().cpu())
        parts["clusters"].append(out.q.argmax(-1).cpu())
    model.train(was_training)
    result = {k: torch.cat(v).numpy() for k, v in parts.items()}
    result["pred"] = result["logits"].argmax(-1)
    return result


def evaluate(
    model: CycleGuardian, data: SplitData, batch_size: int, device: str | torch.device
) -> dict:
    """ICBHI figures (sp, se, score, acc, confusion) of ``model`` on ``data`` (DESIGN §7)."""
    return icbhi_scores(data.labels, predict(model, data, batch_size, device)["pred"])


def evaluate_checkpoint(path: str | Path, data_dir: str | Path | None = None) -> dict:
    """Test-split figures of a saved model (any ``best.pt``/``last.pt``).

    ``data_dir`` None: the folder the checkpoint was trained on when it still exists, else the
    synthetic set. Uses the official test recordings that have audio.
    """
    model, feature_config, meta = load_model(path)
    trained_on = meta.get("data", {}).get("folder")
    data = prepare_data(data_dir, feature_config, trained_on=trained_on)
    test = data.cycles[data.cycles["split"] == "test"]
    figures = evaluate(model, split_data(test, data.features), 64, "cpu")
    return json_safe({
        "checkpoint": str(path), "epoch": meta.get("epoch"), "protocol": meta.get("protocol"),
        "data": describe_data(data, {"test": test}),
        **headline(figures, "test_"),
        "confusion": figures["confusion"],
    })
