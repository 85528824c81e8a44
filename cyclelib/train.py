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

from cyclelib.augment import AugmentConfig, augment_waveforms, circular_shift, spec_augment
from cyclelib.checkpoint import (
    capture_rng,
    load_checkpoint,
    prepare_run_dir,
    restore_rng,
    save_checkpoint,
)
from cyclelib.device import resolve_device
from cyclelib.evaluation import evaluate
from cyclelib.features import FeatureConfig, HybridSpectrogram
from cyclelib.gpu import check_precision, precision, to_device, tuned_for
from cyclelib.losses import CycleGuardianObjective, LossConfig
from cyclelib.model import CycleGuardian, CycleGuardianOutput, ModelConfig
from cyclelib.prepare import SplitData
from cyclelib.progress import progress_bar

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
    precision: str = "fp32"  # CUDA only: fp32 | tf32 | bf16 (cyclelib.gpu.PRECISIONS); fp32 is
    #   the reference, bf16 the fast path (README, "Training on a GPU")

    @classmethod
    def faithful(cls, **changes: object) -> TrainConfig:
        """The original recipe: 600 epochs, batch 128, every augmentation (GPU advised)."""
        return cls(**changes)

    @classmethod
    def quick(cls, **changes: object) -> TrainConfig:
        """A CPU preset for the small network: 40 epochs, batch 32, cached features (no waveform
        effects; circular shift on frames and SpecAugment still on), milestones scaled."""
        return cls(**{"epochs": 40, "batch_size": 32, "wave_effects": False, **changes})

    @property
    def needs_waveforms(self) -> bool:
        """Whether training applies waveform effects, so its features are computed on the fly."""
        return self.wave_effects and self.augment.p_wave > 0

    def scaled_milestones(self) -> list[int]:
        """The milestones, scaled by epochs/600 when training fewer than 600 epochs (at least 1)."""
        if self.epochs >= ORIGINAL_EPOCHS:
            return list(self.milestones)
        return [max(1, round(m * self.epochs / ORIGINAL_EPOCHS)) for m in self.milestones]


@dataclass
class TrainResult:
    """What :func:`train` returns; the files are in ``run_dir``."""

    run_dir: Path
    history: list[dict] = field(default_factory=list)  # one row per epoch, as train_log.jsonl
    best_epoch: int = 0  # epoch of best.pt, counted from 1 (0: none yet)
    best_metrics: dict = field(default_factory=dict)  # the selection figures at best_epoch


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The CPU generator of every random draw in ``epoch`` of run ``seed``."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def epoch_batches(n: int, batch_size: int, generator: torch.Generator) -> list[np.ndarray]:
    """An epoch's batches: a seeded permutation of 0..n-1 cut into (batch_size,) int64 index
    arrays; a last batch of one is dropped (BatchNorm and the contrastive loss need two samples).
    Indices are sorted inside each batch (faster memmap reads; the batch's content is what
    matters). The first draw of the epoch's ``generator``."""
    order = torch.randperm(n, generator=generator).numpy()
    batches = [np.sort(order[i : i + batch_size]) for i in range(0, n, batch_size)]
    return [b for b in batches if len(b) >= 2]


_batches = epoch_batches  # the name benchmarks/bench_gpu.py imports


class _Inputs:
    """Builds a training batch's spectrograms (B, 3, 84, 688) on the device, augmented (§6)."""

    def __init__(self, data: SplitData, config: TrainConfig, features: FeatureConfig, device):
        self.data, self.config, self.device = data, config, device
        self.on_the_fly = config.needs_waveforms
        if self.on_the_fly and data.waves is None:
            raise ValueError("wave_effects=True needs the training waveforms (SplitData.waves)")
        self.spectrogram = HybridSpectrogram(features).to(device) if self.on_the_fly else None

    def __call__(self, index: np.ndarray, generator: torch.Generator) -> torch.Tensor:
        c = self.config
        if self.on_the_fly:
            waves = self.data.waveforms(index).to(self.device)
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


class _Training:
    """What a run trains (DESIGN §6): the objective (network and contrastive projector), Adam, the
    MultiStepLR schedule and the optional EMA of the weights; ``state_dict`` goes into last.pt."""

    def __init__(self, model_config: ModelConfig, config: TrainConfig, device: torch.device):
        torch.manual_seed(config.seed)  # the initial weights
        model = CycleGuardian(tuned_for(model_config, device))
        self.objective = CycleGuardianObjective(model, config.loss).to(device)
        fused = True if device.type == "cuda" else None  # one kernel per step on a GPU
        self.optimizer = torch.optim.Adam(self.objective.parameters(), lr=config.lr,
                                          weight_decay=0.0, fused=fused)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, config.scaled_milestones(), gamma=config.gamma
        )
        self.ema = None if config.ema_decay is None else AveragedModel(
            self.objective.model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay),
            use_buffers=True)

    @property
    def evaluated(self) -> CycleGuardian:
        """The weights evaluated and saved: the EMA's when there is one, else the model's."""
        return self.ema.module if self.ema is not None else self.objective.model

    def state_dict(self) -> dict:
        return {"objective": self.objective.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "ema": None if self.ema is None else self.ema.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.objective.load_state_dict(state["objective"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])


def training_step(
    objective: CycleGuardianObjective, optimizer: torch.optim.Optimizer, x: torch.Tensor,
    labels: torch.Tensor, generator: torch.Generator,
) -> tuple[dict[str, torch.Tensor], CycleGuardianOutput]:
    """One training step (DESIGN §6), the one :func:`train` takes for every batch.

    ``objective`` runs the normal and the group-mix pass on x (B, 3, 84, 688) with labels (B,)
    int64 (group mix draws from ``generator``) and weighs the loss terms; then the gradients are
    cleared, the total is back-propagated and ``optimizer`` steps. Returns the loss terms (scalar
    tensors, ``total`` included, computed before the update) and the normal pass's output.
    Notebook 04 writes the same step out piece by piece.
    """
    terms, out = objective(x, labels, generator)
    optimizer.zero_grad(set_to_none=True)
    terms["total"].backward()
    optimizer.step()
    return terms, out


def first_step(
    model_config: ModelConfig, train_data: SplitData, config: TrainConfig
) -> tuple[dict[str, torch.Tensor], CycleGuardianObjective]:
    """The first step of :func:`train` with these arguments, alone: the same initial weights,
    batch, augmentation and group mix (all from ``config.seed``), through the trainer's own
    objective, Adam and :func:`training_step`. Returns its loss terms (detached) and the
    objective after the update (notebook 04 compares a hand-written step with it)."""
    device = resolve_device(config.device)
    training = _Training(model_config, config, device)
    inputs = _Inputs(train_data, config, model_config.features, device)
    generator = epoch_generator(config.seed, 0)
    index = epoch_batches(len(train_data), config.batch_size, generator)[0]
    x = inputs(index, generator)
    labels = to_device(torch.from_numpy(train_data.labels[index]), device)
    training.objective.train()
    terms, _ = training_step(training.objective, training.optimizer, x, labels, generator)
    return {k: v.detach() for k, v in terms.items()}, training.objective


def _train_epoch(
    training: _Training, inputs: _Inputs, data: SplitData, config: TrainConfig, epoch: int,
    progress: bool,
) -> dict:
    """One epoch of steps; the mean of every loss term and the train accuracy."""
    generator = epoch_generator(config.seed, epoch)
    device, objective, optimizer = inputs.device, training.objective, training.optimizer
    sums = {k: torch.zeros((), device=device, dtype=torch.float64) for k in LOSS_TERMS}
    correct, seen = torch.zeros((), device=device, dtype=torch.long), 0
    first_bad = torch.zeros((), device=device, dtype=torch.long)  # 1-based step, 0: none yet
    objective.train()
    batches = epoch_batches(len(data), config.batch_size, generator)
    bar = progress_bar(batches, desc=f"epoch {epoch + 1}", leave=False, disable=not progress)
    for step, index in enumerate(bar):
        x = inputs(index, generator)
        labels = to_device(torch.from_numpy(data.labels[index]), device)
        terms, out = training_step(objective, optimizer, x, labels, generator)
        bad = (first_bad == 0) & ~torch.isfinite(terms["total"])  # checked on the device
        first_bad = torch.where(bad, step + 1, first_bad)
        if training.ema is not None:
            training.ema.update_parameters(objective.model)
        for k in LOSS_TERMS:
            sums[k] += terms[k].detach() * len(index)
        correct += (out.logits.argmax(-1) == labels).sum()
        seen += len(index)
    if first_bad:  # the epoch's only wait for the GPU, with the loss sums below
        raise TrainingDiverged(
            f"the loss is not finite at epoch {epoch + 1}, step {int(first_bad)}; "
            "training stopped, the last good checkpoint (last.pt) is kept"
        )
    row = {f"loss_{k}": float(v) / max(seen, 1) for k, v in sums.items()}
    row["train_acc"] = float(correct) / max(seen, 1)
    return row


def _epoch(
    training: _Training, inputs: _Inputs, data: SplitData, eval_data: dict[str, SplitData],
    config: TrainConfig, epoch: int, progress: bool,
) -> dict:
    """One epoch (DESIGN §6-7): its steps, the schedule's step, then every evaluated set; the
    ``train_log.jsonl`` row."""
    began = time.perf_counter()
    row = {"epoch": epoch + 1, "lr": training.optimizer.param_groups[0]["lr"]}
    row.update(_train_epoch(training, inputs, data, config, epoch, progress))
    training.scheduler.step()
    for name, split in eval_data.items():
        figures = evaluate(training.evaluated, split, config.eval_batch_size, inputs.device)
        row.update({f"{name}_{k}": v for k, v in figures.items()})
    row["seconds"] = time.perf_counter() - began
    return row


def _better(value: float, best: float | None) -> bool:
    """Whether ``value`` beats ``best`` (None at the start: anything does); NaN never beats."""
    if best is None:
        return True
    return (-math.inf if math.isnan(value) else value) > (-math.inf if math.isnan(best) else best)


def _save(training: _Training, result: TrainResult, row: dict, metrics: dict, static: dict,
          select: tuple[str, str]) -> None:
    """``best.pt`` (weights only) when the selection metric improves, then ``last.pt`` (all the
    training state, for resume). ``metrics``: the epoch's figures of the evaluated sets."""
    key = f"{select[0]}_{select[1]}"
    weights = {**static, "model": training.evaluated.state_dict(), "epoch": row["epoch"],
               "metrics": metrics}
    if _better(row[key], result.best_metrics[key] if result.best_epoch else None):
        result.best_epoch, result.best_metrics = row["epoch"], metrics
        save_checkpoint(result.run_dir / "best.pt", weights)
    save_checkpoint(result.run_dir / "last.pt", {
        **weights, **training.state_dict(), "rng": capture_rng(), "history": result.history,
        "best_epoch": result.best_epoch, "best_metrics": result.best_metrics,
    })


def _resume(training: _Training, result: TrainResult, static: dict, device: torch.device) -> int:
    """Restore the run from its ``last.pt`` (training state, random states, log, best so far);
    the epochs it had done (0 when there is no last.pt)."""
    path = result.run_dir / "last.pt"
    if not path.is_file():
        return 0
    state = load_checkpoint(path, map_location=device)
    if state["train_config"] != static["train_config"]:
        raise ValueError(f"{path} was written with another training configuration; "
                         "resume it with the same one or pass overwrite=True")
    training.load_state_dict(state)
    restore_rng(state["rng"])
    result.history = list(state["history"])
    result.best_epoch, result.best_metrics = state["best_epoch"], state["best_metrics"]
    return state["epoch"]  # epochs are counted from 1: the next index to run


def train(
    model_config: ModelConfig,
    train_data: SplitData,
    eval_data: dict[str, SplitData],
    config: TrainConfig,
    run_dir: str | Path,
    *,
    select: tuple[str, str] = ("val", "score"),
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
    Epochs are counted from 1 in the log, the checkpoints and the result. Spectrograms computed
    on the fly follow ``model_config.features``. Raises :class:`TrainingDiverged` on a NaN/inf
    loss. (Huge-page CPU memory: :mod:`cyclelib.device`.)
    """
    if select[0] not in eval_data:
        raise ValueError(f"select names the set {select[0]!r} but eval_data has {list(eval_data)}")
    if len(train_data) < 2:
        raise ValueError(f"training needs at least 2 cycles, got {len(train_data)}")
    device = resolve_device(config.device)
    check_precision(config.precision, device)
    run_dir = prepare_run_dir(run_dir, resume=resume, overwrite=overwrite)
    if device.type == "cuda":  # the GPU fast path (cyclelib.gpu): inputs resident on the GPU
        train_data = train_data.resident(device)
        eval_data = {name: split.resident(device) for name, split in eval_data.items()}
    training = _Training(model_config, config, device)
    inputs = _Inputs(train_data, config, model_config.features, device)
    static = {"model_config": asdict(model_config), "train_config": asdict(config),
              "select": list(select), **(meta or {})}
    result = TrainResult(run_dir)
    start = _resume(training, result, static, device) if resume else 0
    log_path = run_dir / "train_log.jsonl"
    log_path.write_text("".join(json.dumps(row) + "\n" for row in result.history))
    bar = progress_bar(range(start, config.epochs), initial=start, total=config.epochs,
                       desc=run_dir.name, disable=not progress)
    with precision(config.precision, device) as encoder_dtype:
        training.objective.encoder_dtype = encoder_dtype
        for epoch in bar:
            row = _epoch(training, inputs, train_data, eval_data, config, epoch, progress)
            result.history.append(row)
            with log_path.open("a") as log:
                log.write(json.dumps(row) + "\n")
            metrics = {k: v for k, v in row.items() if k.startswith(tuple(eval_data))}
            _save(training, result, row, metrics, static, select)
            bar.set_postfix(loss=f"{row['loss_total']:.3f}",
                            **{select[0]: f"{row[f'{select[0]}_{select[1]}']:.3f}"})
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, row)
    return result
