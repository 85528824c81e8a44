"""The multi-objective training loop of CycleGuardian (DESIGN §6) with honest selection (§7).

Each step: draw a batch, build its inputs (cached hybrid spectrograms, or waveforms augmented and
turned into spectrograms on the training device), run :class:`~cyclelib.losses.
CycleGuardianObjective` (normal pass + group-mix pass from the shared embeddings), take an Adam
step. Each epoch: step the MultiStepLR schedule, evaluate the selection sets, log every loss term,
the learning rate and the ICBHI figures to ``train_log.jsonl``, write ``last.pt`` (full training
state) and, when the selection metric improves, ``best.pt`` (model only).

Reproducibility: the network is initialised from ``torch.manual_seed(seed)``; every random draw of
an epoch (batch order, augmentation, group mix) comes from a ``torch.Generator`` seeded from
(seed, epoch), so a run resumed from ``last.pt`` sees exactly the batches an uninterrupted run
sees and ends with the same numbers on the CPU.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from cyclelib.augment import AugmentConfig, augment_waveforms, circular_shift, spec_augment
from cyclelib.checkpoint import (
    capture_rng,
    load_checkpoint,
    prepare_run_dir,
    restore_rng,
    save_checkpoint,
)
from cyclelib.features import FeatureConfig, HybridSpectrogram
from cyclelib.losses import CycleGuardianObjective, LossConfig
from cyclelib.metrics import icbhi_scores
from cyclelib.model import CycleGuardian, ModelConfig

LOSS_TERMS = ("total", "ce", "kl_o", "kl_m", "sim_o", "sim_m", "con")  # logged separately
ORIGINAL_EPOCHS = 600  # the schedule's milestones are given for 600 epochs (DESIGN §6)


@dataclass(frozen=True)
class TrainConfig:
    """How to train (DESIGN §6). Defaults are the original recipe (use :meth:`quick` on a CPU)."""

    epochs: int = 600  # the original trained 600 epochs
    batch_size: int = 128  # the original's batch; group mix and the contrastive loss need >= 2
    lr: float = 1e-3  # Adam learning rate, no weight decay (original)
    milestones: tuple[int, ...] = (200, 350, 450, 550)  # MultiStepLR epochs, given for 600 epochs
    gamma: float = 0.33  # lr factor at each milestone (original)
    ema_decay: float | None = None  # None: off. The original kept an EMA with decay 0.1, i.e.
    #   ema = 0.1·ema + 0.9·weights, practically no averaging; set 0.1 to reproduce it
    wave_effects: bool = True  # one waveform effect with p 0.5: features computed on the fly
    circular_shift: bool = True  # random circular shift with p 0.5 (on frames when cached)
    spec_augment: bool = True  # SpecAugment with p 0.5 on each map (cached or on the fly)
    augment: AugmentConfig = AugmentConfig()  # probabilities and ranges of the augmentations
    loss: LossConfig = LossConfig()  # loss weights: set one to 0 for an ablation
    eval_batch_size: int = 64  # batch of the no-grad evaluation passes (memory only)
    seed: int = 0  # initial weights, batch order, augmentation and group mix all follow it
    device: str = "auto"  # auto (cuda when available) | cpu | cuda

    @classmethod
    def faithful(cls, **changes: object) -> TrainConfig:
        """The original recipe: 600 epochs, batch 128, every augmentation (GPU advised)."""
        return cls(**changes)

    @classmethod
    def quick(cls, **changes: object) -> TrainConfig:
        """A CPU preset for the small network: 40 epochs, batch 32, cached features (no waveform
        effects; circular shift on frames and SpecAugment still on), milestones scaled."""
        return cls(**{"epochs": 40, "batch_size": 32, "wave_effects": False, **changes})

    def scaled_milestones(self) -> list[int]:
        """The milestones, scaled by epochs/600 when training fewer than 600 epochs (at least 1)."""
        if self.epochs >= ORIGINAL_EPOCHS:
            return list(self.milestones)
        return [max(1, round(m * self.epochs / ORIGINAL_EPOCHS)) for m in self.milestones]


@dataclass
class SplitData:
    """The cycles of one split and where their inputs come from.

    ``features`` (M, 3, 84, 688) float16 (usually the memmap of
    :func:`cyclelib.feature_cache.cached_features`) is shared by the splits; ``rows`` (N,) picks
    this split's cycles from it. ``waves`` (N, n) float32 are the fitted waveforms of the same
    cycles, needed only to train with waveform effects.
    """

    labels: np.ndarray  # (N,) int64 class 0..3
    features: np.ndarray  # (M, 3, 84, 688) hybrid spectrograms of all rows
    rows: np.ndarray  # (N,) int64 positions of this split's cycles in ``features``
    waves: np.ndarray | None = None  # (N, n) float32, only for on-the-fly augmentation

    def __len__(self) -> int:
        return len(self.labels)

    def spectrograms(self, index: np.ndarray) -> torch.Tensor:
        """(len(index), 3, 84, 688) float32 CPU tensor of the cycles ``index`` (0..N-1)."""
        return torch.from_numpy(np.asarray(self.features[self.rows[index]], dtype=np.float32))


@dataclass
class TrainResult:
    """What :func:`train` returns; the files are in ``run_dir``."""

    run_dir: Path
    history: list[dict] = field(default_factory=list)  # one row per epoch, as train_log.jsonl
    best_epoch: int = 0  # epoch of best.pt, counted from 1 (0: none yet)
    best_metrics: dict = field(default_factory=dict)  # the selection figures at best_epoch


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def resolve_device(name: str) -> torch.device:
    """``auto`` (cuda when available, else cpu), ``cpu`` or ``cuda``; a clear error otherwise."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}: choose auto, cpu or cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda was asked for but torch sees no CUDA GPU")
    return torch.device(name)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The CPU generator of every random draw in ``epoch`` of run ``seed``."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


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


def evaluate(model: CycleGuardian, data: SplitData, batch_size: int, device) -> dict:
    """ICBHI figures (sp, se, score, acc, confusion) of ``model`` on ``data`` (DESIGN §7)."""
    return icbhi_scores(data.labels, predict(model, data, batch_size, device)["pred"])


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[np.ndarray]:
    """A seeded permutation of 0..n-1 cut into batches; a last batch of one is dropped (BatchNorm
    and the contrastive loss need two samples). Indices are sorted inside each batch (faster
    memmap reads; the batch's content is what matters)."""
    order = torch.randperm(n, generator=generator).numpy()
    batches = [np.sort(order[i : i + batch_size]) for i in range(0, n, batch_size)]
    return [b for b in batches if len(b) >= 2]


class _Inputs:
    """Builds a training batch's spectrograms (B, 3, 84, 688) on the device, augmented (§6)."""

    def __init__(self, data: SplitData, config: TrainConfig, features: FeatureConfig, device):
        self.data, self.config, self.device = data, config, device
        self.on_the_fly = config.wave_effects and config.augment.p_wave > 0
        if self.on_the_fly and data.waves is None:
            raise ValueError("wave_effects=True needs the training waveforms (SplitData.waves)")
        self.spectrogram = HybridSpectrogram(features).to(device) if self.on_the_fly else None

    def __call__(self, index: np.ndarray, generator: torch.Generator) -> torch.Tensor:
        c = self.config
        if self.on_the_fly:
            waves = torch.from_numpy(self.data.waves[index]).to(self.device)
            waves = augment_waveforms(waves, c.augment, generator)
            if c.circular_shift:
                waves = circular_shift(waves, c.augment.p_shift, generator)
            with torch.no_grad():
                x = self.spectrogram(waves)
        else:
            x = self.data.spectrograms(index).to(self.device)
            if c.circular_shift:
                x = circular_shift(x, c.augment.p_shift, generator)
        if c.spec_augment:
            x = spec_augment(x, c.augment, generator)
        return x


def _train_epoch(objective, optimizer, ema, inputs, data, config, epoch, progress) -> dict:
    """One epoch of steps; the mean of every loss term and the train accuracy."""
    generator = epoch_generator(config.seed, epoch)
    device = inputs.device
    sums = {k: torch.zeros((), device=device, dtype=torch.float64) for k in LOSS_TERMS}
    correct, seen = torch.zeros((), device=device, dtype=torch.long), 0
    objective.train()
    batches = _batches(len(data), config.batch_size, generator)
    for step, index in enumerate(tqdm(batches, desc=f"epoch {epoch + 1}", leave=False,
                                      disable=not progress)):
        x = inputs(index, generator)
        labels = torch.from_numpy(data.labels[index]).to(device)
        terms, out = objective(x, labels, generator)
        if not torch.isfinite(terms["total"]):
            bad = {k: float(v.detach()) for k, v in terms.items()}
            raise TrainingDiverged(
                f"the loss is not finite at epoch {epoch + 1}, step {step + 1} ({bad}); "
                "training stopped, the last good checkpoint (last.pt) is kept"
            )
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        optimizer.step()
        if ema is not None:
            ema.update_parameters(objective.model)
        for k in LOSS_TERMS:
            sums[k] += terms[k].detach() * len(index)
        correct += (out.logits.argmax(-1) == labels).sum()
        seen += len(index)
    row = {f"loss_{k}": float(v) / max(seen, 1) for k, v in sums.items()}
    row["train_acc"] = float(correct) / max(seen, 1)
    return row


def _better(value: float, best: float | None) -> bool:
    """Whether ``value`` beats ``best`` (None at the start: anything does); NaN never beats."""
    if best is None:
        return True
    return (-math.inf if math.isnan(value) else value) > (-math.inf if math.isnan(best) else best)


def train(
    model_config: ModelConfig,
    train_data: SplitData,
    eval_data: dict[str, SplitData],
    config: TrainConfig,
    run_dir: str | Path,
    *,
    select: tuple[str, str] = ("val", "score"),
    feature_config: FeatureConfig | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    meta: dict | None = None,
    on_epoch_end: Callable[[int, dict], None] | None = None,
) -> TrainResult:
    """Train CycleGuardian and keep the checkpoint chosen by ``select`` (DESIGN §6-7).

    ``eval_data`` names the sets evaluated after every epoch (e.g. ``{"val": ...}``); ``select``
    = (set name, metric) picks ``best.pt``: ("val", "score") is the honest protocol, ("test",
    "acc") the original's. ``run_dir`` must be new or empty unless ``resume`` (continue from its
    ``last.pt``) or ``overwrite``. ``meta`` (protocol, data description) is stored in the
    checkpoints. ``on_epoch_end(epoch, row)`` runs after each epoch's checkpoint is written.
    Epochs are counted from 1 in the log, the checkpoints and the result.
    Raises :class:`TrainingDiverged` on a NaN/inf loss.
    """
    if select[0] not in eval_data:
        raise ValueError(f"select names the set {select[0]!r} but eval_data has {list(eval_data)}")
    if len(train_data) < 2:
        raise ValueError(f"training needs at least 2 cycles, got {len(train_data)}")
    run_dir = prepare_run_dir(run_dir, resume=resume, overwrite=overwrite)
    feature_config = feature_config or FeatureConfig()
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    objective = CycleGuardianObjective(CycleGuardian(model_config), config.loss).to(device)
    optimizer = torch.optim.Adam(objective.parameters(), lr=config.lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, config.scaled_milestones(), gamma=config.gamma
    )
    ema = None
    if config.ema_decay is not None:
        ema = AveragedModel(objective.model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay),
                            use_buffers=True)
    inputs = _Inputs(train_data, config, feature_config, device)
    static = {
        "model_config": asdict(model_config),
        "feature_config": asdict(feature_config),
        "train_config": asdict(config),
        "select": list(select),
        **(meta or {}),
    }
    result = TrainResult(run_dir)
    best_value: float | None = None
    start = 0
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    if resume and last_path.is_file():
        state = load_checkpoint(last_path, map_location=device)
        if state["train_config"] != static["train_config"]:
            raise ValueError(f"{last_path} was written with another training configuration; "
                             "resume it with the same one or pass overwrite=True")
        objective.load_state_dict(state["objective"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        restore_rng(state["rng"])
        result.history = list(state["history"])
        result.best_epoch, result.best_metrics = state["best_epoch"], state["best_metrics"]
        best_value = state["best_value"]
        start = state["epoch"]  # epochs are counted from 1: the next index to run
    log_path = run_dir / "train_log.jsonl"
    log_path.write_text("".join(json.dumps(row) + "\n" for row in result.history))
    evaluated = ema.module if ema is not None else objective.model
    bar = tqdm(range(start, config.epochs), initial=start, total=config.epochs,
               desc=run_dir.name, disable=not progress)
    for epoch in bar:
        began = time.perf_counter()
        row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"]}
        row.update(_train_epoch(objective, optimizer, ema, inputs, train_data, config, epoch,
                                progress))
        scheduler.step()
        for name, data in eval_data.items():
            figures = evaluate(evaluated, data, config.eval_batch_size, device)
            row.update({f"{name}_{k}": v for k, v in figures.items()})
        row["seconds"] = time.perf_counter() - began
        result.history.append(row)
        with log_path.open("a") as log:
            log.write(json.dumps(row) + "\n")
        metrics = {k: v for k, v in row.items() if k.startswith(tuple(eval_data))}
        if _better(row[f"{select[0]}_{select[1]}"], best_value):
            best_value, result.best_epoch, result.best_metrics = (
                row[f"{select[0]}_{select[1]}"], epoch + 1, metrics)
            save_checkpoint(best_path, {**static, "model": evaluated.state_dict(),
                                        "epoch": epoch + 1, "metrics": metrics})
        save_checkpoint(last_path, {
            **static, "model": evaluated.state_dict(), "epoch": epoch + 1, "metrics": metrics,
            "objective": objective.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "ema": ema.state_dict() if ema else None,
            "rng": capture_rng(), "history": result.history, "best_epoch": result.best_epoch,
            "best_metrics": result.best_metrics, "best_value": best_value,
        })
        bar.set_postfix(loss=f"{row['loss_total']:.3f}",
                        **{select[0]: f"{row[f'{select[0]}_{select[1]}']:.3f}"})
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, row)
    return result
