"""One source of shapes (DESIGN §4-5): bins, frames and groups come from the FeatureConfig, the
network reads them from ``ModelConfig.features``, and a checkpoint stores them once."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from cyclelib.checkpoint import load_model
from cyclelib.export import CycleGuardianInference
from cyclelib.features import FeatureConfig, group_frames
from cyclelib.model import CycleGuardian, ModelConfig
from cyclelib.prepare import SplitData
from cyclelib.train import TrainConfig, train

HALF_RATE = FeatureConfig(hop_length=512)  # 344 frames per cycle: 22 groups of 20, stride 15


def test_model_config_takes_its_input_sizes_from_the_feature_config() -> None:
    config = replace(ModelConfig.small(), features=HALF_RATE)
    assert ModelConfig().n_groups == FeatureConfig().n_groups == 45
    assert config.n_groups == HALF_RATE.n_groups == 22
    model = CycleGuardian(config).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, HALF_RATE.n_bins, HALF_RATE.n_frames))
    assert out.q.shape == (2, 22, config.n_clusters)
    spec = torch.randn(1, 3, 84, HALF_RATE.n_frames)
    assert group_frames(spec, HALF_RATE).shape == (1, 22, 3, 84, 20)
    assert group_frames(torch.randn(1, 3, 84, 688)).shape == (1, 45, 3, 84, 20)


def test_the_inference_front_end_follows_the_model() -> None:
    inference = CycleGuardianInference(CycleGuardian(replace(ModelConfig.small(),
                                                             features=HALF_RATE)))
    assert inference.frontend.config == HALF_RATE
    with torch.no_grad():
        assert inference(0.1 * torch.randn(1, HALF_RATE.n_samples)).shape == (1, 4)


def test_a_checkpoint_keeps_the_feature_config_once(tmp_path) -> None:
    config = replace(ModelConfig.small(), features=HALF_RATE)
    rng = np.random.default_rng(0)
    features = rng.standard_normal((4, 3, 84, HALF_RATE.n_frames)).astype(np.float16)
    data = SplitData(np.arange(4) % 4, features, np.arange(4))
    result = train(config, data, {"val": data}, TrainConfig.quick(epochs=1, batch_size=4,
                                                                  device="cpu"),
                   tmp_path / "run", progress=False)
    model, feature_config, meta = load_model(result.run_dir / "best.pt")
    assert model.config == config and feature_config == HALF_RATE
    assert meta["model_config"]["features"]["hop_length"] == 512
    assert "feature_config" not in torch.load(result.run_dir / "best.pt", weights_only=True)
