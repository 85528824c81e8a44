"""The checks of notebook 05's exercises (docs/teaching.md).

- 5.1 symmetric per-channel int8 quantisation of a weight (DESIGN §8): the learner's int8 values
  and scales against ``torch.quantize_per_channel`` (qint8, zero points 0) with the scales
  max|w|/127 of each output channel, and the learner's largest dequantisation error against
  torch's.
- 5.2 the fp32 ``.pte`` on one cycle against eager PyTorch (DESIGN §8): the learner's function
  runs the file with ``executorch.runtime``; its probabilities must be the file's and lie within
  1e-4 of the eager module's.
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cyclelib.exercises._core import Wrong, call, exercise, expect_close

INT8_MAX = 127  # symmetric int8: the range [-127, 127], zero at 0
PARITY_ATOL = 1e-4  # fp32 .pte against eager, as the tests of the export require


def _mentions(function: Any, names: tuple[str, ...]) -> str | None:
    """The first of ``names`` the source of ``function`` uses (None when unreadable or none)."""
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        return None
    return next((name for name in names if name in source), None)


def reference_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Per-output-channel symmetric int8 of ``weight`` (O, ...) by torch.

    Returns the int8 values (O, ...), the scales (O,) = max|w| of each channel / 127, and the
    largest ``|dequantised − w|``.
    """
    w = weight.detach().float().cpu()
    scale = w.abs().flatten(1).amax(1) / INT8_MAX
    zero = torch.zeros(len(w), dtype=torch.long)
    with warnings.catch_warnings():  # torch deprecates its quantized tensors (not yet removed)
        warnings.simplefilter("ignore")
        quantised = torch.quantize_per_channel(w, scale.double(), zero, 0, torch.qint8)
    error = float((quantised.dequantize() - w).abs().max())
    return quantised.int_repr(), scale, error


def _array(value: Any, what: str) -> np.ndarray:
    try:
        return np.asarray(value.detach().cpu() if hasattr(value, "detach") else value,
                          dtype=np.float64)
    except (TypeError, ValueError):
        raise Wrong(f"{what}: expected a tensor, got {type(value).__name__}") from None


def _check_quantiser(function: Any, weight: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Wrong unless ``function`` (w) -> (q, scale) is symmetric per-channel int8 of ``weight``."""
    result = call(function, weight.clone())
    if not isinstance(result, tuple | list) or len(result) != 2:
        raise Wrong("quantise_per_channel must return the pair (q, scale)")
    q_ref, scale_ref, error = reference_int8(weight)
    scale = _array(result[1], "scale").reshape(-1)
    w = weight.detach().double().cpu()
    if scale.size == 1 and len(scale_ref) > 1:
        raise Wrong("scale: one scale for the whole tensor; int8 here has one per output "
                    "channel (row), scale[o] = max|w[o]| / 127")
    if scale.shape != tuple(scale_ref.shape):
        raise Wrong(f"scale: expected one per output channel, shape {tuple(scale_ref.shape)}, "
                    f"got {scale.shape} (reduce over every axis but the first)")
    for divisor in (128, 255, 256):
        if np.allclose(scale, scale_ref.double().numpy() * INT8_MAX / divisor, rtol=1e-5):
            raise Wrong(f"scale: max|w| / {divisor}; symmetric int8 uses [-127, 127], so the "
                        "largest weight of a channel must map to 127: max|w| / 127")
    expect_close(scale, scale_ref, "scale (max|w| of each output channel / 127)", rtol=1e-5,
                 atol=1e-12)
    q = _array(result[0], "q")
    want = q_ref.double().numpy()
    if q.shape != want.shape:
        raise Wrong(f"q: expected the weight's shape {want.shape}, got {q.shape}")
    ratio = (w / scale_ref.double().reshape(-1, *[1] * (w.ndim - 1))).numpy()  # w / scale
    if max((q == np.floor(ratio)).mean(), (q == np.trunc(ratio)).mean()) > 0.99:  # float32 ±1
        raise Wrong("q: w / scale is cut towards zero or down; round it to the nearest "
                    "integer (torch.round)")
    if not np.array_equal(q, np.round(q)) or np.abs(q).max() > INT8_MAX:
        raise Wrong("q must hold whole numbers in [-127, 127]: round w / scale, then clamp")
    off = q != want
    tie = np.abs(np.abs(ratio - np.floor(ratio)) - 0.5) < 1e-4  # x.5: either neighbour is fine
    if (off & ~tie).any() or (np.abs(q - want) > 1).any():
        raise Wrong(f"q: {int(off.sum())} of {off.size} values differ from torch's "
                    "quantize_per_channel (round(w / scale), clamped to [-127, 127])")
    return q_ref, error


@exercise("5.1", "symmetric per-channel int8 quantisation of a weight")
def check_int8(answer: Any) -> str:
    """``answer``: (quantise_per_channel, weight, max_error): the function w (O, ...) ->
    (q (O, ...) whole numbers in [-127, 127], scale (O,)), the real weight it was applied to, and
    the largest ``|q·scale − w|`` over that weight."""
    if not isinstance(answer, tuple | list) or len(answer) != 3:
        raise Wrong("expected (quantise_per_channel, weight, max_error)")
    function, weight, max_error = answer
    used = _mentions(function, ("quantize_per_channel", "quantize_per_tensor", "quantize_pt2e"))
    if used:
        raise Wrong(f"quantise_per_channel calls torch's {used}: compute scale and q by hand")
    if not isinstance(weight, torch.Tensor) or weight.ndim < 2 or not weight.is_floating_point():
        raise Wrong("weight: expected a float weight tensor of the model, (out, in) or "
                    "(out, in, kh, kw)")
    generator = torch.Generator().manual_seed(5)
    conv_like = torch.randn(6, 4, 3, 3, generator=generator) * torch.linspace(0.1, 2, 6)[:, None,
                                                                                      None, None]
    _check_quantiser(function, conv_like)  # a conv's 4-d weight, channels of different ranges
    _, error = _check_quantiser(function, weight.detach())
    try:
        got = float(max_error)
    except (TypeError, ValueError):
        raise Wrong(f"max_error: expected a number, got {type(max_error).__name__}") from None
    if got < error * 0.9:
        raise Wrong(f"max_error: {got:.3g} is below the largest |q·scale − w| ({error:.3g}): "
                    "take the maximum over every weight, not the mean")
    expect_close(got, error, "max_error (the largest |q·scale − w|)", rtol=1e-3, atol=1e-9)
    half_step = float(weight.detach().abs().flatten(1).amax(1).max()) / INT8_MAX / 2
    return f"q and scale equal torch's quantize_per_channel; largest error {error:.2e}, at most " \
           f"half a step ({half_step:.2e})"


def pte_probabilities(path: str | Path, wave: np.ndarray) -> np.ndarray:
    """The ``.pte`` at ``path`` run by cyclelib's runtime wrapper on one cycle (176000,) -> (4,)."""
    from cyclelib.export.runtimes import MobileClassifier

    return MobileClassifier.load(path).run(np.asarray(wave, dtype=np.float32).reshape(1, -1))[0]


@exercise("5.2", "run the .pte on one cycle against eager")
def check_pte(answer: Any) -> str:
    """``answer``: {"run_pte": function (path, wave (176000,) float32) -> probabilities (4,),
    "path": the fp32 .pte, "wave": one cycle, "eager": the CycleGuardianInference exported}."""
    if not isinstance(answer, dict) or set(answer) != {"run_pte", "path", "wave", "eager"}:
        raise Wrong("expected the dict {'run_pte', 'path', 'wave', 'eager'}")
    run_pte, path, eager = answer["run_pte"], Path(answer["path"]), answer["eager"]
    used = _mentions(run_pte, ("MobileClassifier", "load_classifier", "predict_proba"))
    if used:
        raise Wrong(f"run_pte uses cyclelib's {used}: load the program with "
                    "executorch.runtime.Runtime yourself")
    wave = np.asarray(answer["wave"], dtype=np.float32).reshape(-1)
    if wave.shape != (176_000,):
        raise Wrong(f"wave: expected one cycle of 176000 samples, got shape {wave.shape}")
    try:
        got = _array(call(run_pte, path, wave.copy()), "run_pte's result")
    except RuntimeError as error:  # the runtime's refusal says little: say what it takes
        raise Wrong(f"running the .pte failed ({error}); its forward takes one float32 tensor "
                    "of shape (1, 176000)") from None
    if got.shape == (1, 4):
        raise Wrong("run_pte returns shape (1, 4): return the cycle's 4 probabilities, (4,)")
    if got.shape != (4,):
        raise Wrong(f"run_pte must return the 4 probabilities, shape (4,); got {got.shape}")
    with torch.no_grad():
        want = eager.eval()(torch.from_numpy(wave[None]))[0].double().numpy()
    if np.allclose(got, np.exp(want) / np.exp(want).sum(), atol=1e-4):
        raise Wrong("softmax applied twice: the .pte already ends in a softmax")
    diff = float(np.abs(got - want).max())
    if diff > PARITY_ATOL:
        raise Wrong(f"the probabilities differ from eager PyTorch by up to {diff:.2g} (> 1e-4): "
                    "is it the fp32 .pte, and the same cycle as float32 (1, 176000)?")
    expect_close(got, pte_probabilities(path, wave), "not the .pte's output on this cycle",
                 rtol=0, atol=1e-6)
    return f"the .pte's probabilities match eager PyTorch: max |difference| {diff:.1e} ≤ 1e-4"
