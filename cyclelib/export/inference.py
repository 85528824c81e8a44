"""The model a phone runs (DESIGN §8): raw audio in, class probabilities out, and its bundle.

:class:`CycleGuardianInference` chains the hybrid spectrogram front end (DESIGN §4) of the
model's own :class:`~cyclelib.features.FeatureConfig`, the network's logits-only path (DESIGN §5)
and a softmax: (B, 176000) float32 audio at 22,000 Hz -> (B, 4) probabilities. It is what
``torch.export`` captures (:mod:`cyclelib.export.lowering`).

:class:`CycleGuardianBundle` follows torchaudio's pipeline bundles: one object that knows the
sample rate, the cycle length and the input contract of a trained checkpoint, and gives the
inference module (``bundle.get_model()``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from cyclelib.checkpoint import load_model
from cyclelib.constants import CLASS_NAMES
from cyclelib.export.contract import input_contract
from cyclelib.features import FeatureConfig, HybridSpectrogram
from cyclelib.model import CycleGuardian, LogitsOnly


class CycleGuardianInference(nn.Module):
    """Raw audio (B, 176000) float32 at 22 kHz -> class probabilities (B, 4) (DESIGN §8).

    ``frontend`` is the :class:`~cyclelib.features.HybridSpectrogram` of ``model.config.features``
    (B, 176000) -> (B, 3, 84, 688); ``network`` the model's logits-only path (B, 3, 84, 688) ->
    (B, 4); then a softmax. The module is put in eval mode (BatchNorm running statistics) and
    shares the model's weights.
    """

    def __init__(self, model: CycleGuardian) -> None:
        super().__init__()
        self.frontend = HybridSpectrogram(model.config.features)
        self.network = LogitsOnly(model)
        self.eval()

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, 176000) float32 raw audio -> (B, 4) class probabilities."""
        return torch.softmax(self.network(self.frontend(audio)), dim=-1)


class CycleGuardianBundle:
    """A trained checkpoint and what it expects (DESIGN §8), like a torchaudio pipeline bundle::

        bundle = CycleGuardianBundle("runs/small/seed_0/best.pt")
        bundle.sample_rate, bundle.num_samples  # 22000, 176000: resample and fit cycles to these
        model = bundle.get_model()  # (B, 176000) float32 -> (B, 4) probabilities, eval mode
        bundle.contract  # the input/output contract written beside every exported file

    ``model`` is the trained network (eval mode), ``meta`` what the checkpoint says about its
    training (epoch, metrics, configs, protocol, data), ``trained_on`` the data folder it was
    trained on (None when unknown).
    """

    def __init__(self, checkpoint: str | Path, map_location: str | torch.device = "cpu") -> None:
        self.checkpoint = Path(checkpoint)
        self.model, _, self.meta = load_model(self.checkpoint, map_location)

    @property
    def feature_config(self) -> FeatureConfig:
        """The front end's parameters: those the model was trained with."""
        return self.model.config.features

    @property
    def sample_rate(self) -> int:
        """Rate (Hz) the model's input must have: 22,000."""
        return self.feature_config.sample_rate

    @property
    def num_samples(self) -> int:
        """Samples per input cycle: 176,000 (8 s)."""
        return self.feature_config.n_samples

    @property
    def class_names(self) -> tuple[str, ...]:
        """Names of the output columns, in order."""
        return CLASS_NAMES

    @property
    def contract(self) -> dict:
        """Input and output of the exported files (:func:`~cyclelib.export.input_contract`)."""
        return input_contract(self.feature_config)

    @property
    def trained_on(self) -> str | None:
        """The data folder of the training run, as recorded in the checkpoint."""
        return self.meta.get("data", {}).get("folder")

    def get_model(self) -> CycleGuardianInference:
        """The inference module: raw audio -> probabilities, sharing the trained weights."""
        return CycleGuardianInference(self.model)
