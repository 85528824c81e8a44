"""cyclelib: CycleGuardian (arXiv 2502.00734) reproduced and taught on ICBHI 2017.

One module per concept, following ``DESIGN.md`` §1:

    icbhi, audio, dataset (§2–3) ─► features (§4) ─► model (§5) ─► losses (§6)
    ─► train (§6–7) ─► export (§8); metrics (§7), synthetic (teaching set), viz, cli.
"""

import os

# Huge-page-backed CPU tensors (PyTorch's allocator option, read once at the first CPU
# allocation of the process): a CPU training step allocates its activations afresh, and with
# 4 KB pages a faithful step is about a fifth slower on our 2-core machine (figures: README,
# "Speed on a CPU"). No effect on the numbers; set THP_MEM_ALLOC_ENABLE=0 to opt out.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from cyclelib.constants import CLASS_NAMES, CYCLE_SAMPLES, CYCLE_SECONDS, SAMPLE_RATE

__version__ = "0.1.0"
__all__ = ["CLASS_NAMES", "CYCLE_SAMPLES", "CYCLE_SECONDS", "SAMPLE_RATE", "__version__"]
