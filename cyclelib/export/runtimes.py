"""Run an exported CycleGuardian on the desktop the way a phone runs it (DESIGN §8).

:class:`MobileClassifier` loads a ``.pte`` with ``executorch.runtime`` (the same C++ runtime and
XNNPACK kernels the Android and iOS libraries ship); :class:`OnnxClassifier` runs the ONNX
cross-check with onnxruntime. Both take one 8 s cycle of raw audio at 22,000 Hz, float32,
shape (176000,) or a batch (B, 176000), and return class probabilities (4,) or (B, 4) in the
order of :data:`cyclelib.CLASS_NAMES`. Input is checked against the file's contract (its
sidecar, :mod:`cyclelib.export.contract`) before it reaches the runtime: wrong length, sample
rate, dtype or a NaN gives a ValueError saying what was expected.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cyclelib.export.contract import read_contract
from cyclelib.export.lowering import require_executorch


class Classifier:
    """Shared input checks and batching; subclasses run one (1, 176000) float32 array."""

    def __init__(self, path: Path, contract: dict) -> None:
        self.path = path
        self.contract = contract
        self.sample_rate = int(contract["input"]["sample_rate"])
        self.length = int(contract["input"]["length"])
        self.class_names = tuple(contract["class_names"])

    def check_audio(self, audio: np.ndarray | torch.Tensor, sample_rate: int) -> np.ndarray:
        """Validate ``audio`` against the contract; return it as a (B, length) float32 array."""
        expected = (
            f"{self.path.name} expects float32 audio of {self.length} samples "
            f"({self.length / self.sample_rate:g} s at {self.sample_rate} Hz), shape "
            f"({self.length},) or (B, {self.length})"
        )
        if sample_rate != self.sample_rate:
            raise ValueError(
                f"{expected}; got sample_rate={sample_rate}. Resample first, e.g. "
                f"cyclelib.data.resample(wave, {sample_rate}, {self.sample_rate})"
            )
        if isinstance(audio, torch.Tensor):
            audio = audio.detach().cpu().numpy()
        if not isinstance(audio, np.ndarray):
            raise ValueError(f"{expected}; got a {type(audio).__name__}, not an array")
        if audio.dtype != np.float32:
            raise ValueError(f"{expected}; got dtype {audio.dtype} (use audio.astype(np.float32))")
        if audio.ndim not in (1, 2) or audio.shape[-1] != self.length or not audio.size:
            raise ValueError(
                f"{expected}; got shape {audio.shape}. Cut or tile each cycle to "
                f"{self.length / self.sample_rate:g} s with cyclelib.data.fit_length"
            )
        if not np.isfinite(audio).all():
            raise ValueError(f"{expected}; got NaN or infinite samples")
        return np.ascontiguousarray(audio.reshape(-1, self.length))

    def predict_proba(self, audio: np.ndarray | torch.Tensor, sample_rate: int) -> np.ndarray:
        """Raw audio (length,) or (B, length) at ``sample_rate`` -> probabilities (4,) or (B, 4)."""
        batch = self.check_audio(audio, sample_rate)
        probs = np.concatenate([self.run(row[None]) for row in batch])
        return probs[0] if np.ndim(audio) == 1 else probs

    def predict(self, audio: np.ndarray | torch.Tensor, sample_rate: int) -> np.ndarray:
        """Predicted class index (int array, shape () or (B,)); names in ``class_names``."""
        return self.predict_proba(audio, sample_rate).argmax(-1)

    def run(self, audio: np.ndarray) -> np.ndarray:
        """One checked cycle (1, length) float32 -> probabilities (1, 4). No checks: use predict."""
        raise NotImplementedError


class MobileClassifier(Classifier):
    """A ``.pte`` on the ExecuTorch runtime (XNNPACK CPU kernels), as on a phone (DESIGN §8)."""

    def __init__(self, path: Path, contract: dict, method: object) -> None:
        super().__init__(path, contract)
        self._method = method

    @classmethod
    def load(cls, path: str | Path, threads: int | None = None) -> MobileClassifier:
        """Load ``path`` (its sidecar JSON, when present, gives the contract).

        ``threads`` resets ExecuTorch's process-wide CPU thread pool (1 = single-threaded timing).
        """
        require_executorch("Loading a .pte")
        from executorch.runtime import Runtime

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no ExecuTorch program at {path}")
        if threads is not None:
            from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

            _unsafe_reset_threadpool(threads)
        try:
            method = Runtime.get().load_program(path).load_method("forward")
        except RuntimeError as err:
            raise ValueError(f"{path} is not a loadable ExecuTorch program: {err}") from err
        contract = read_contract(path)
        sizes = tuple(method.metadata.input_tensor_meta(0).sizes())
        if sizes != (1, int(contract["input"]["length"])):
            raise ValueError(f"{path} takes input of shape {sizes}, its contract says "
                             f"{contract['input']['shape']}: the sidecar belongs to another file")
        return cls(path, contract, method)

    def run(self, audio: np.ndarray) -> np.ndarray:
        """One checked cycle (1, length) float32 -> probabilities (1, 4)."""
        return self._method.execute([torch.from_numpy(audio)])[0].numpy()


class OnnxClassifier(Classifier):
    """An ``.onnx`` on onnxruntime's CPU provider: the cross-check for other runtimes."""

    def __init__(self, path: Path, contract: dict, session: object) -> None:
        super().__init__(path, contract)
        self._session = session
        self._input = session.get_inputs()[0].name

    @classmethod
    def load(cls, path: str | Path, threads: int | None = None) -> OnnxClassifier:
        """Load ``path``; ``threads`` sets onnxruntime's intra-op threads (1 = single-threaded)."""
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no ONNX model at {path}")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return cls(path, read_contract(path), session)

    def run(self, audio: np.ndarray) -> np.ndarray:
        """One checked cycle (1, length) float32 -> probabilities (1, 4)."""
        return self._session.run(None, {self._input: audio})[0]


def load_classifier(path: str | Path, threads: int | None = None) -> Classifier:
    """The runtime of an exported file by its suffix: ``.onnx`` on onnxruntime, else ExecuTorch."""
    runtime = OnnxClassifier if Path(path).suffix == ".onnx" else MobileClassifier
    return runtime.load(path, threads=threads)
