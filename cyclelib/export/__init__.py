"""Mobile export (DESIGN §8): one file from raw audio to class probabilities, and its checks.

    inference     CycleGuardianInference (front end + network + softmax) and CycleGuardianBundle
                  (a checkpoint, its sample rate and contract, its inference module)
    contract      the input/output contract, the sidecar JSON (write and read), file names
    lowering      torch.export capture, ExecuTorch (XNNPACK) .pte, ONNX; require_executorch
    quantisation  int8 of the network by PT2E, calibrated on real cycles
    runtimes      the .pte on executorch.runtime, the .onnx on onnxruntime, input checks
    report        parity with eager PyTorch, ICBHI figures, latency, the report table
    pipeline      export_checkpoint (``cyclelib export``) and export_files

Chapter 5 (notebook ``05_mobile_export``) uses the names re-exported here. ExecuTorch is an
optional extra, imported only where a ``.pte`` is written or run.
"""

from cyclelib.export.contract import (
    FILES,
    REPORT,
    input_contract,
    read_contract,
    sidecar_path,
    write_sidecar,
)
from cyclelib.export.inference import CycleGuardianBundle, CycleGuardianInference
from cyclelib.export.lowering import (
    ExecutorchMissing,
    MobileRewrites,
    capture,
    export_onnx,
    export_pte,
    require_executorch,
)
from cyclelib.export.pipeline import export_checkpoint, export_files
from cyclelib.export.quantisation import layer_precision, quantize_int8
from cyclelib.export.report import (
    ORIGINAL_WEIGHTS_MB,
    latency_ms,
    median_latency_ms,
    parity,
    probabilities,
    report_markdown,
)
from cyclelib.export.runtimes import MobileClassifier, OnnxClassifier, load_classifier

__all__ = [
    "FILES", "ORIGINAL_WEIGHTS_MB", "REPORT", "CycleGuardianBundle", "CycleGuardianInference",
    "ExecutorchMissing", "MobileClassifier", "MobileRewrites", "OnnxClassifier", "capture",
    "export_checkpoint", "export_files", "export_onnx", "export_pte", "input_contract",
    "latency_ms", "layer_precision", "load_classifier", "median_latency_ms", "parity",
    "probabilities", "quantize_int8", "read_contract", "report_markdown", "require_executorch",
    "sidecar_path", "write_sidecar",
]  # fmt: skip
