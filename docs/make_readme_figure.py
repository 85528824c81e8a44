"""Draw docs/hybrid_spectrogram.png, the README's picture: one cycle and its three maps.

    python docs/make_readme_figure.py            # a 'both' cycle of the synthetic teaching set
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from cyclelib import CLASS_NAMES, MAP_NAMES, SAMPLE_RATE  # noqa: E402
from cyclelib.data import iter_cycle_waveforms, scan_icbhi, synthetic_dir  # noqa: E402
from cyclelib.features import HybridSpectrogram  # noqa: E402


def main() -> None:
    data_dir = synthetic_dir()
    cycles = scan_icbhi(data_dir).cycles
    row = cycles[cycles.label == 3].iloc[[0]]
    _, waves = next(iter_cycle_waveforms(row, data_dir, progress=False))
    spec = HybridSpectrogram()(torch.from_numpy(waves))[0].numpy()

    fig, axes = plt.subplots(4, 1, figsize=(9, 7.5), sharex=False,
                             gridspec_kw={"height_ratios": [0.7, 1, 1, 1]})
    t = np.arange(waves.shape[1]) / SAMPLE_RATE
    axes[0].plot(t, waves[0], lw=0.3, color="0.2")
    axes[0].set(xlim=(0, t[-1]), yticks=[], xlabel="time (s)",
                title=f"a synthetic '{CLASS_NAMES[3]}' cycle, tiled to 8 s at 22 kHz")
    for ax, name, image in zip(axes[1:], MAP_NAMES, spec, strict=True):
        ax.imshow(image, origin="lower", aspect="auto", cmap="magma", vmin=-2.5, vmax=3)
        ax.set(ylabel="bin", title=f"{name}: 84 bins × 688 frames, rows standardised")
        for start in range(0, 45 * 15, 15 * 5):  # every fifth group of 20 frames, stride 15
            ax.axvspan(start, start + 20, color="w", alpha=0.12, lw=0)
    axes[-1].set_xlabel("frame (hop 256); shaded: every fifth of the 45 groups of 20 frames")
    fig.tight_layout()
    out = Path(__file__).with_name("hybrid_spectrogram.png")
    fig.savefig(out, dpi=80)
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
