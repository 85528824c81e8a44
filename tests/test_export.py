"""Mobile export (DESIGN §8): the files a phone runs give the eager model's probabilities.

A small CycleGuardian is trained for 2 epochs on a small synthetic set by the trainer, then
exported once per module through the command line (``cyclelib export``): the fp32 and int8
``.pte`` with ExecuTorch installed, the ONNX file with ExecuTorch hidden (which also checks the
install message). Each file is run by its own runtime and compared with eager PyTorch.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import sys

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from cyclelib.checkpoint import load_model
from cyclelib.cli import main
from cyclelib.constants import CLASS_NAMES, CYCLE_SAMPLES, SAMPLE_RATE
from cyclelib.data import load_icbhi, make_synthetic_icbhi, sample_cycles
from cyclelib.export import (
    FILES,
    REPORT,
    CycleGuardianBundle,
    CycleGuardianInference,
    ExecutorchMissing,
    MobileClassifier,
    MobileRewrites,
    OnnxClassifier,
    input_contract,
    probabilities,
    require_executorch,
)
from cyclelib.feature_cache import cached_features
from cyclelib.features import HybridSpectrogram
from cyclelib.model import CycleGuardian, ModelConfig
from cyclelib.prepare import SplitData
from cyclelib.train import TrainConfig, train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A small synthetic ICBHI folder: 6 patients, 45 train and 27 test cycles."""
    return make_synthetic_icbhi(tmp_path_factory.mktemp("synthetic"), seed=0, patients=6)


@pytest.fixture(scope="module")
def checkpoint(data_dir, tmp_path_factory):
    """best.pt of the small network trained 2 epochs by :func:`cyclelib.train.train`."""
    cycles = load_icbhi(data_dir).cycles
    features = cached_features(cycles, data_dir, progress=False)
    labels = cycles["label"].to_numpy(np.int64)
    split = {name: np.flatnonzero(cycles["split"] == name) for name in ("train", "test")}
    sets = {name: SplitData(labels[rows], features, rows) for name, rows in split.items()}
    result = train(
        ModelConfig.small(), sets["train"], {"val": sets["test"]},
        TrainConfig.quick(epochs=2, batch_size=16, device="cpu"),
        tmp_path_factory.mktemp("run") / "small", progress=False,
        meta={"data": {"folder": str(data_dir), "synthetic": True}},
    )
    return result.run_dir / "best.pt"


@pytest.fixture(scope="module")
def held_out(data_dir):
    """Every test-split cycle of the folder: waveforms (N, 176000) and labels (N,)."""
    return sample_cycles(data_dir, "test", 1000)


@pytest.fixture(scope="module")
def reference(checkpoint, held_out):
    """Eager PyTorch probabilities (N, 4) of the checkpoint on the held-out cycles."""
    return probabilities(CycleGuardianBundle(checkpoint).get_model(), held_out[0])


@pytest.fixture(scope="module")
def pte_run(checkpoint, tmp_path_factory):
    """``cyclelib export CKPT --out DIR --int8`` (fp32 and int8 .pte), its stdout and code."""
    pytest.importorskip("executorch.runtime")
    out = tmp_path_factory.mktemp("pte")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["export", str(checkpoint), "--out", str(out), "--int8",
                     "--calibration-cycles", "16", "--check-cycles", "20"])
    return out, code, stdout.getvalue()


@pytest.fixture(scope="module")
def onnx_run(checkpoint, tmp_path_factory):
    """``cyclelib export CKPT --out DIR --onnx`` with ExecuTorch hidden: ONNX only."""
    pytest.importorskip("onnxruntime")
    out = tmp_path_factory.mktemp("onnx")
    stderr = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stderr(stderr):
        patch.setitem(sys.modules, "executorch", None)  # `import executorch` now fails
        code = main(["export", str(checkpoint), "--out", str(out), "--onnx",
                     "--check-cycles", "20"])
    return out, code, stderr.getvalue()


def test_inference_module_is_spectrogram_network_softmax() -> None:
    torch.manual_seed(0)
    model = CycleGuardian(ModelConfig.small()).eval()
    inference = CycleGuardianInference(model)
    audio = 0.1 * torch.randn(2, CYCLE_SAMPLES)
    with torch.no_grad():
        probs = inference(audio)
        logits = model(HybridSpectrogram()(audio)).logits
    assert probs.shape == (2, len(CLASS_NAMES))
    torch.testing.assert_close(probs, torch.softmax(logits, -1), rtol=0, atol=1e-6)


def test_bundle_knows_rate_and_contract_and_gives_the_inference_module(checkpoint) -> None:
    bundle = CycleGuardianBundle(checkpoint)
    assert (bundle.sample_rate, bundle.num_samples) == (SAMPLE_RATE, CYCLE_SAMPLES)
    assert bundle.class_names == CLASS_NAMES and bundle.contract == input_contract()
    assert bundle.contract["input"]["shape"] == [1, CYCLE_SAMPLES]
    model, features, meta = load_model(checkpoint)
    assert bundle.feature_config == features and bundle.trained_on == meta["data"]["folder"]
    inference = bundle.get_model()
    assert not inference.training and inference.frontend.config == features
    audio = 0.1 * torch.randn(2, CYCLE_SAMPLES)
    with torch.no_grad():
        torch.testing.assert_close(inference(audio), CycleGuardianInference(model)(audio))


class _FrontEndOps(torch.nn.Module):
    """The operations MobileRewrites replaces, with a bias and a conv it must leave alone."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.kernels = torch.nn.Parameter(torch.randn(8, 1, 300, generator=generator))
        self.bias = torch.nn.Parameter(torch.randn(8, generator=generator))

    def forward(self, signal: torch.Tensor) -> list[torch.Tensor]:
        return [
            F.conv1d(signal, self.kernels, self.bias, stride=100),
            F.conv2d(signal[:, :, None], self.kernels[:, :, None], stride=(1, 128))[:, :, 0],
            F.conv1d(signal, self.kernels, stride=2, padding=4),  # a hop of 2: not framing
            F.pad(signal, (7, 5), mode="reflect"),
        ]


def test_mobile_rewrites_record_the_same_arithmetic_without_conv_or_reflect_pad() -> None:
    module, signal = _FrontEndOps(), torch.randn(2, 1, 5000)
    with torch.no_grad():
        expected = module(signal)
        program = torch.export.export(module, (signal,))
        with MobileRewrites():
            rewritten = torch.export.export(module, (signal,))
        got = rewritten.module()(signal)
    ops = [str(n.target) for n in rewritten.graph.nodes if n.op == "call_function"]
    assert sum("conv" in op for op in ops) == 1 and "aten.unfold.default" in ops
    assert not any("pad" in op for op in ops)
    assert any("pad" in str(n.target) for n in program.graph.nodes)
    for want, have in zip(expected, got, strict=True):
        torch.testing.assert_close(have, want, rtol=1e-5, atol=1e-4)


def test_missing_executorch_message_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "executorch", None)
    with pytest.raises(ExecutorchMissing, match=r'pip install "cyclelib\[export\]"'):
        require_executorch("Loading a .pte")
    with pytest.raises(ImportError, match="Loading a .pte needs ExecuTorch"):
        MobileClassifier.load("model.pte")
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        assert main(["export", "best.pt", "--out", "unused"]) == 1
    assert 'pip install "cyclelib[export]"' in stderr.getvalue()


def test_onnx_export_works_without_executorch(onnx_run) -> None:
    out, code, stderr = onnx_run
    assert code == 0
    assert 'pip install "cyclelib[export]"' in stderr and "ONNX file only" in stderr
    assert (out / FILES["onnx"]).is_file() and not (out / FILES["pte_fp32"]).exists()


def _check_parity(classifier, held_out, reference) -> None:
    probs = classifier.predict_proba(held_out[0][:20], SAMPLE_RATE)
    assert probs.shape == (20, 4)
    np.testing.assert_allclose(probs, reference[:20], rtol=0, atol=1e-4)


def test_onnxruntime_matches_eager_within_1e4_on_20_cycles(onnx_run, held_out, reference):
    _check_parity(OnnxClassifier.load(onnx_run[0] / FILES["onnx"]), held_out, reference)


def test_pte_fp32_matches_eager_within_1e4_on_20_cycles(pte_run, held_out, reference):
    _check_parity(MobileClassifier.load(pte_run[0] / FILES["pte_fp32"]), held_out, reference)


def test_pte_int8_agrees_with_fp32_on_95_percent_of_held_out_cycles(pte_run, held_out, reference):
    waves = held_out[0]
    int8 = MobileClassifier.load(pte_run[0] / FILES["pte_int8"]).predict_proba(waves, SAMPLE_RATE)
    assert len(waves) >= 20
    assert (int8.argmax(1) == reference.argmax(1)).mean() >= 0.95
    assert np.abs(int8 - reference).max() < 0.1  # close probabilities, not only the same argmax


def test_int8_keeps_the_front_end_fp32_and_quantises_every_network_layer(pte_run) -> None:
    layers = json.loads((pte_run[0] / REPORT).read_text())["files"]["pte_int8"]["quantisation"][
        "layers"]
    assert layers["frontend"]["int8"] == 0 and layers["frontend"]["fp32"] > 0
    assert layers["network"]["fp32"] == 0 and layers["network"]["int8"] > 0


def test_cli_writes_files_sidecars_and_report(pte_run, checkpoint) -> None:
    out, code, stdout = pte_run
    assert code == 0 and "max abs prob diff" in stdout
    report = json.loads((out / REPORT).read_text())
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert report["checkpoint"]["sha256"] == digest
    for key in ("pte_fp32", "pte_int8"):
        path = out / FILES[key]
        assert report["files"][key]["size_bytes"] == path.stat().st_size
        assert report["parity"][key]["cycles"] == 20
        side = json.loads((path.parent / (path.name + ".json")).read_text())
        assert side["input"] == {**side["input"], "shape": [1, CYCLE_SAMPLES], "dtype": "float32",
                                 "sample_rate": SAMPLE_RATE, "length": CYCLE_SAMPLES}
        assert side["class_names"] == list(CLASS_NAMES)
        assert side["checkpoint"]["sha256"] == digest
        assert side["size_bytes"] == path.stat().st_size
        assert side["model_config"] == json.loads(json.dumps(
            load_model(checkpoint)[2]["model_config"]))
    assert report["parity"]["pte_fp32"]["max_abs_prob_diff"] <= 1e-4
    assert report["files"]["pte_int8"]["size_bytes"] < report["files"]["pte_fp32"]["size_bytes"]


@pytest.mark.parametrize(
    ("audio", "sample_rate", "message"),
    [
        (np.zeros(CYCLE_SAMPLES - 1, np.float32), SAMPLE_RATE, r"got shape \(175999,\)"),
        (np.zeros(CYCLE_SAMPLES, np.float32), 44100, "got sample_rate=44100"),
        (np.zeros(CYCLE_SAMPLES, np.float64), SAMPLE_RATE, "got dtype float64"),
        (np.full(CYCLE_SAMPLES, np.nan, np.float32), SAMPLE_RATE, "NaN"),
        (np.zeros((1, 1, CYCLE_SAMPLES), np.float32), SAMPLE_RATE, r"got shape \(1, 1, 176000\)"),
        (np.zeros((0, CYCLE_SAMPLES), np.float32), SAMPLE_RATE, r"got shape \(0, 176000\)"),
        ([0.0] * CYCLE_SAMPLES, SAMPLE_RATE, "got a list"),
    ],
    ids=["length", "sample-rate", "dtype", "nan", "rank", "empty", "list"],
)
def test_wrapper_rejects_bad_input_saying_what_it_expected(pte_run, audio, sample_rate, message):
    classifier = MobileClassifier.load(pte_run[0] / FILES["pte_fp32"])
    with pytest.raises(ValueError, match=message) as error:
        classifier.predict_proba(audio, sample_rate)
    assert "expects float32 audio of 176000 samples (8 s at 22000 Hz)" in str(error.value)


def test_wrapper_names_a_missing_or_broken_file(tmp_path) -> None:
    pytest.importorskip("executorch.runtime")
    with pytest.raises(FileNotFoundError, match="no ExecuTorch program at"):
        MobileClassifier.load(tmp_path / "missing.pte")
    (tmp_path / "broken.pte").write_bytes(b"not a program")
    with pytest.raises(ValueError, match="broken.pte is not a loadable ExecuTorch program"):
        MobileClassifier.load(tmp_path / "broken.pte")


def test_wrapper_accepts_one_cycle_or_a_batch(pte_run, held_out) -> None:
    classifier = MobileClassifier.load(pte_run[0] / FILES["pte_fp32"])
    waves = held_out[0][:2]
    batch = classifier.predict_proba(waves, SAMPLE_RATE)
    np.testing.assert_array_equal(classifier.predict_proba(waves[1], SAMPLE_RATE), batch[1])
    np.testing.assert_allclose(batch.sum(1), 1.0, atol=1e-5)
    assert classifier.predict(waves, SAMPLE_RATE).tolist() == batch.argmax(1).tolist()
