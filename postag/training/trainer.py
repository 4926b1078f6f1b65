"""Training: one epoch, evaluation and best-checkpoint selection, each its own function.

`fit` is a plain function of a config and a prepared dataset, so the command line, tests
and Ray Tune trials all call the same code; callbacks see each epoch's figures and the
resumable training state (the caller decides what to print, log or checkpoint).
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.profiler import record_function

from postag.config import ConfigError, RunConfig, TrainConfig
from postag.data.batching import Batch, collate, sorted_order, training_order
from postag.data.dataset import PAD_ID, UNK_ID, UNKNOWN_TAG_ID, PreparedDataset, Split
from postag.evaluation.metrics import Evaluation, evaluate_predictions
from postag.models.tagger import Tagger
from postag.training.objective import Objective
from postag.training.progress import progress
from postag.training.resources import release_freed_memory

if TYPE_CHECKING:
    from postag.models.ensemble import TaggerEnsemble


@dataclass(frozen=True)
class EpochResult:
    epoch: int
    train_loss: float
    # The weights that are selected and shipped: with train.ema_decay or train.swa_start,
    # their average.
    val_accuracy: float
    # The training weights' own accuracy: the same figure without an average.
    raw_val_accuracy: float
    # The selected weights' mean F1 over the tags present in the dev set (rare tags count
    # as much as common ones), and their mean cross-entropy per dev token.
    val_macro_f1: float
    val_loss: float
    epoch_seconds: float  # training alone
    validation_seconds: float
    tokens_per_second: float
    # Mean over the epoch's steps of the gradient norm of the first and the last LSTM
    # layer: a deep stack whose first layer gets almost no gradient cannot learn.
    grad_norm_first_lstm: float
    grad_norm_last_lstm: float

    def metrics(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items() if k != "epoch"}


# Per-epoch metric names, the same in every run so runs compare side by side.
EPOCH_METRICS = tuple(f.name for f in fields(EpochResult) if f.name != "epoch")
# Those that measure the machine, not the training: a replay of a run repeats the others
# to the last digit (on the CPU), not these.
TIMING_METRICS = ("epoch_seconds", "validation_seconds", "tokens_per_second")
REPLAYED_METRICS = tuple(name for name in EPOCH_METRICS if name not in TIMING_METRICS)


@dataclass
class TrainingState:
    """Everything needed to continue training after the last completed epoch.

    The state `fit` hands its callbacks refers to the weights and optimizer state it goes on
    training (copied off an accelerator, not on the CPU): write it out during the call, or
    keep a `snapshot()`. Only the best weights are a copy of their own.
    """

    epoch: int = 0
    model_state: dict = field(default_factory=dict)
    optimizer_state: dict = field(default_factory=dict)
    best_state: dict = field(default_factory=dict)
    # The average of the weights (AveragedModel's state), with train.ema_decay or swa_start.
    average_state: dict = field(default_factory=dict)
    best_epoch: int = 0
    # The best epoch's figure on train.objective, which chooses it; None before the first.
    best_score: float | None = None
    history: list[dict] = field(default_factory=list)
    # The random generators after the last epoch (`random_states()`): dropout and word
    # dropout draw from torch's, so a resumed run draws what a straight one would have.
    # Empty in states saved before they were kept: those resume with a fresh seed.
    rng_state: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def snapshot(self) -> TrainingState:
        """A copy that further training leaves as it is."""
        return copy.deepcopy(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainingState:
        # States saved before the rate became a function of progress kept a torch
        # scheduler's state, which nothing needs now.
        values = {k: v for k, v in values.items() if k != "scheduler_state"}
        # States saved while the moving average was the only one kept it as `ema_state`.
        if "ema_state" in values:
            values["average_state"] = values.pop("ema_state")
        # States saved while validation accuracy alone chose epochs named its best so.
        if "best_val_accuracy" in values:
            best = values.pop("best_val_accuracy")
            values["best_score"] = best if best >= 0 else None
        # Epochs recorded before weight averaging existed validated the training weights;
        # before validation was timed apart, it was not timed; before macro F1 and the
        # loss were validated, they were not measured.
        values["history"] = [
            {
                "raw_val_accuracy": epoch["val_accuracy"],
                "validation_seconds": 0.0,
                "val_macro_f1": math.nan,
                "val_loss": math.nan,
                **epoch,
            }
            for epoch in values.get("history", [])
        ]
        return cls(**values)


@dataclass(frozen=True)
class FitResult:
    model: Tagger  # holds the best epoch's weights
    best_epoch: int
    best_score: float  # on train.objective
    history: list[EpochResult]
    device: torch.device


EpochCallback = Callable[[EpochResult, TrainingState], None]


class TrainingDiverged(ArithmeticError):
    """The training loss became NaN or infinite: nothing after it can be trusted."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but torch sees no CUDA device")
    return torch.device(name)


def precision(device: torch.device, mixed: bool) -> torch.autocast:
    """bfloat16 autocast on CUDA when asked: matmuls and the LSTM in bf16, sums in float32.

    bfloat16 keeps float32's exponent range, so unlike float16 it needs no loss scaling.
    """
    if mixed and device.type != "cuda":
        raise ConfigError("train.mixed_precision needs a CUDA device; this run is on the CPU")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=mixed)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def random_states() -> dict:
    """Python's, numpy's and torch's global generators (CUDA's too, where there is one), in
    plain types and tensors, as `torch.load(weights_only=True)` reads them back."""
    version, internal, gauss = random.getstate()
    numpy_state = np.random.get_state(legacy=False)
    states = {
        "python": [version, list(internal), gauss],
        "numpy": {**numpy_state, "state": {**numpy_state["state"]}},
        "torch": torch.get_rng_state(),
    }
    states["numpy"]["state"]["key"] = numpy_state["state"]["key"].tolist()
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(states: dict) -> None:
    """Put back what `random_states()` read."""
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = {**states["numpy"], "state": {**states["numpy"]["state"]}}
    numpy_state["state"]["key"] = np.array(numpy_state["state"]["key"], dtype=np.uint32)
    np.random.set_state(numpy_state)
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(
        model.parameters(),
        lr=config.lr,
        betas=config.betas,
        eps=config.eps,
        weight_decay=config.weight_decay,
    )


def weight_average(model: nn.Module, config: TrainConfig) -> AveragedModel | None:
    """The average of `model`'s weights that the config asks for, or None: a moving average
    of every step's (`ema_decay`), or the plain mean of the epochs' last (`swa_start`)."""
    if config.ema_decay:
        return AveragedModel(model, multi_avg_fn=warmed_up_ema(config.ema_decay))
    if config.swa_start is not None:
        return AveragedModel(model)  # its default update is the running mean
    return None


def averaged_epoch(config: TrainConfig, epoch: int) -> bool:
    """Whether `swa_start` takes `epoch`'s last weights into the mean: every epoch after the
    first swa_start x epochs."""
    return config.swa_start is not None and epoch > config.swa_start * config.epochs


def warmed_up_ema(decay: float) -> Callable[[list, list, torch.Tensor | int], None]:
    """torch's EMA update, at min(decay, (1 + n) / (10 + n)) after n updates.

    A fixed decay of 0.999 would still give the random initial weights e^-2 of the average
    after 2,000 steps; the warmed-up decay starts as a mean of the few steps so far and
    reaches `decay` only when the run has taken enough steps to fill its window.
    """

    def update(averaged: list, current: list, num_averaged: torch.Tensor | int) -> None:
        n = int(num_averaged)
        get_ema_multi_avg_fn(min(decay, (1 + n) / (10 + n)))(averaged, current, num_averaged)

    return update


def learning_rate(config: TrainConfig, progress: float) -> float:
    """The rate after `progress` epochs of training (a fraction within an epoch).

    Written as a function of progress rather than with torch's step-counting schedulers:
    the number of steps in an epoch varies with token-budget batches, and a resumed run
    then gets the same rates as a straight one from (epoch, step) alone, with no state.
    """
    warmup = config.warmup_fraction * config.epochs
    if progress < warmup:
        return config.lr * progress / warmup
    if config.lr_schedule == "cosine":
        decayed = (progress - warmup) / (config.epochs - warmup)
        return config.lr * (1 + math.cos(math.pi * min(decayed, 1.0))) / 2
    return config.lr


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def packed_targets(
    batch: Batch, device: torch.device, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """Gold tags (or a joint column's `labels`) in the same order as the model's packed
    output, padding left out."""
    padded = batch.tags if labels is None else labels
    packed = pack_padded_sequence(padded, batch.lengths, batch_first=True, enforce_sorted=False)
    return packed.data.to(device)


def gradient_norm(parameters: list[nn.Parameter]) -> torch.Tensor:
    """The L2 norm of the parameters' gradients, as a 0-dim tensor on their device."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros((), device=parameters[0].device)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


# The parts of a training step, as torch.profiler sees them (`record_function` costs next to
# nothing when no profiler runs): pipelines/bench/training/profile.py reads them.
STEP_PARTS = {
    part: f"postag.{part.replace(' ', '_')}"
    for part in ("batching", "forward", "loss", "backward", "gradient norms", "optimizer")
}


def batch_loss(
    model: Tagger, batch: Batch, device: torch.device, label_smoothing: float
) -> torch.Tensor:
    """The batch's summed cross-entropy: the tag's, plus each joint head's on its column."""
    scores, joint = model.score_jointly(batch, device)
    with record_function(STEP_PARTS["loss"]):
        pairs = [(scores.data, packed_targets(batch, device))]
        pairs += [(s, packed_targets(batch, device, batch.joint[c])) for c, s in joint.items()]
        return sum(
            F.cross_entropy(
                s.float(), t, ignore_index=PAD_ID, reduction="sum", label_smoothing=label_smoothing
            )
            for s, t in pairs
        )


def gradients_of(
    model: Tagger,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    device: torch.device,
    mixed_precision: bool,
    label_smoothing: float,
) -> torch.Tensor:
    """The batch's forward and backward passes: its summed loss (detached), and each
    parameter's gradient of the loss per token."""
    with precision(device, mixed_precision), record_function(STEP_PARTS["forward"]):
        loss = batch_loss(model, batch, device, label_smoothing)
    with record_function(STEP_PARTS["backward"]):
        optimizer.zero_grad(set_to_none=True)
        (loss / batch.num_tokens).backward()
    return loss.detach()


def train_epoch(
    model: Tagger,
    optimizer: torch.optim.Optimizer,
    split: Split,
    batches: list[np.ndarray],
    device: torch.device,
    description: str = "train",
    mixed_precision: bool = False,
    rate: Callable[[float], float] | None = None,
    average: AveragedModel | None = None,
    label_smoothing: float = 0.0,
) -> dict[str, float]:
    """One pass over `batches`; returns loss per token, tokens seen and gradient norms.

    rate: given the share of this epoch done after a step, that step's learning rate;
    None leaves the optimizer's rate as it is. average: updated after every step. With
    joint heads, the loss is the sum of every head's, the tag's and each joint column's.
    """
    model.train()
    first_layer, last_layer = model.lstm_layer_parameters(0), model.lstm_layer_parameters(-1)
    # Sums stay on the device and are read once per epoch: a .item() per step would make
    # every step wait for the GPU.
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    first_norms = torch.zeros((), dtype=torch.float64, device=device)
    last_norms = torch.zeros((), dtype=torch.float64, device=device)
    total_tokens = 0
    for step, indices in enumerate(progress(batches, description)):
        if rate is not None:
            set_learning_rate(optimizer, rate((step + 1) / len(batches)))
        with record_function(STEP_PARTS["batching"]):
            batch = collate(split, indices, with_chars=model.uses_chars)
        loss = gradients_of(model, optimizer, batch, device, mixed_precision, label_smoothing)
        with record_function(STEP_PARTS["gradient norms"]):
            first_norms += gradient_norm(first_layer)
            last_norms += gradient_norm(last_layer)
        with record_function(STEP_PARTS["optimizer"]):
            optimizer.step()
            if average is not None:
                average.update_parameters(model)
        total_loss += loss
        total_tokens += batch.num_tokens
    steps = max(len(batches), 1)
    return {
        "loss": total_loss.item() / max(total_tokens, 1),
        "tokens": total_tokens,
        "grad_norm_first_lstm": first_norms.item() / steps,
        "grad_norm_last_lstm": last_norms.item() / steps,
    }


@dataclass(frozen=True)
class Predictions:
    """Flat over every token of every sentence of a split."""

    gold: torch.Tensor
    predicted: torch.Tensor
    words: torch.Tensor  # word ids
    loss: float  # mean cross-entropy of the tag per token (no label smoothing)


@torch.no_grad()
def predict(
    model: Tagger,
    split: Split,
    batch_size: int,
    device: torch.device,
    mixed_precision: bool = False,
) -> Predictions:
    model.eval()
    gold, predicted, words = [], [], []
    loss = torch.zeros((), dtype=torch.float64, device=device)
    for indices in sorted_order(split.lengths, batch_size):
        batch = collate(split, indices, with_chars=model.uses_chars)
        with precision(device, mixed_precision):
            scores = model.score(batch, device)
        targets = packed_targets(batch, device)
        # A tag the training data never had (UNKNOWN_TAG_ID) has no score to take a loss
        # from: such a token counts as wrong, and is left out of the loss as padding is.
        scored = targets.masked_fill(targets == UNKNOWN_TAG_ID, PAD_ID)
        loss += F.cross_entropy(scores.data.float(), scored, ignore_index=PAD_ID, reduction="sum")
        predicted.append(scores.data.argmax(dim=-1).cpu())
        gold.append(targets.cpu())
        packed_words = pack_padded_sequence(
            batch.tokens, batch.lengths, batch_first=True, enforce_sorted=False
        )
        words.append(packed_words.data)
    gold_tags = torch.cat(gold)
    scored = (gold_tags != PAD_ID) & (gold_tags != UNKNOWN_TAG_ID)
    mean_loss = loss.item() / max(int(scored.sum()), 1)
    return Predictions(gold_tags, torch.cat(predicted), torch.cat(words), mean_loss)


def evaluate(
    model: Tagger,
    split: Split,
    batch_size: int,
    device: torch.device,
    mixed_precision: bool = False,
) -> Evaluation:
    return evaluation_of(predict(model, split, batch_size, device, mixed_precision), model)


def evaluation_of(predictions: Predictions, model: Tagger) -> Evaluation:
    unseen = predictions.words == UNK_ID
    return evaluate_predictions(predictions.gold, predictions.predicted, unseen, model.num_tags)


def epoch_batches(split: Split, config: TrainConfig, epoch: int) -> list[np.ndarray]:
    """The epoch's batches of sentence indices, in training order.

    The order depends only on (seed, epoch), so a resumed run repeats a straight one.
    """
    rng = np.random.default_rng([config.seed, epoch])
    return training_order(split.lengths, config, rng)[: config.max_batches_per_epoch]


def fit(
    config: RunConfig,
    dataset: PreparedDataset,
    callbacks: Sequence[EpochCallback] = (),
    resume: TrainingState | None = None,
) -> FitResult:
    """Train for `config.train.epochs`, validating after each epoch; keep the best weights."""
    train_config = config.train
    if train_config.num_threads:
        torch.set_num_threads(train_config.num_threads)
    seed_everything(train_config.seed)
    device = resolve_device(train_config.device)
    precision(device, train_config.mixed_precision)  # refuse an impossible setting at once
    train_split, dev_split = dataset.splits["train"], dataset.splits["dev"]
    model, optimizer, average = _build(config, dataset, device, resume)
    state = resume or TrainingState()

    for epoch in range(state.epoch + 1, train_config.epochs + 1):
        batches = epoch_batches(train_split, train_config, epoch)
        started = time.perf_counter()
        trained = train_epoch(
            model,
            optimizer,
            train_split,
            batches,
            device,
            f"epoch {epoch}",
            train_config.mixed_precision,
            rate=lambda done, epoch=epoch: learning_rate(train_config, epoch - 1 + done),
            average=average if train_config.ema_decay else None,
            label_smoothing=train_config.label_smoothing,
        )
        seconds = time.perf_counter() - started
        _check_finite(epoch, trained["loss"], train_config.lr)
        # Rates are set before each step; this one is where the next epoch starts.
        set_learning_rate(optimizer, learning_rate(train_config, epoch))
        if average is not None and averaged_epoch(train_config, epoch):
            average.update_parameters(model)
        validated = _validate(model, average, dev_split, train_config, device)
        result = _epoch_result(epoch, trained, seconds, validated)
        state = _next_state(state, result, model, optimizer, average, train_config.objective)
        # The last epoch's state copies and the epoch's batches are garbage now: give their
        # memory back before a callback measures or checkpoints the process.
        release_freed_memory()
        for callback in callbacks:
            callback(result, state)

    model.load_state_dict(state.best_state)
    history = [EpochResult(**h) for h in state.history]
    return FitResult(model, state.best_epoch, state.best_score, history, device)


def _selected(model: Tagger, average: AveragedModel | None) -> Tagger:
    """What is validated, selected and shipped: the average of the weights once it has
    begun (swa_start's waits for its first epoch), else the training weights."""
    return average.module if average is not None and average.n_averaged > 0 else model


def _validate(
    model: Tagger,
    average: AveragedModel | None,
    dev: Split,
    config: TrainConfig,
    device: torch.device,
) -> dict[str, float]:
    """The selected weights' dev figures (each a metric an objective may name), the
    training weights' own accuracy, and the seconds it took."""
    started = time.perf_counter()
    mixed = config.mixed_precision
    selected_model = _selected(model, average)
    figures = validation_metrics(selected_model, dev, config.batch_size, device, mixed)
    raw = figures["val_accuracy"]
    if selected_model is not model:
        raw = evaluate(model, dev, config.batch_size, device, mixed).accuracy
    return {
        **figures,
        "raw_val_accuracy": raw,
        "validation_seconds": time.perf_counter() - started,
    }


def validation_metrics(
    model: Tagger | TaggerEnsemble,
    dev: Split,
    batch_size: int,
    device: torch.device,
    mixed_precision: bool = False,
) -> dict[str, float]:
    """`model`'s figures on `dev` under the names an objective gives them: what each epoch
    logs, and what an ensemble of a sweep's seeds is validated by."""
    predictions = predict(model, dev, batch_size, device, mixed_precision)
    selected = evaluation_of(predictions, model)
    return {
        "val_accuracy": selected.accuracy,
        "val_macro_f1": selected.macro_f1,
        "val_loss": predictions.loss,
    }


def _epoch_result(
    epoch: int, trained: dict[str, float], seconds: float, validated: dict[str, float]
) -> EpochResult:
    return EpochResult(
        epoch=epoch,
        train_loss=trained["loss"],
        epoch_seconds=seconds,
        tokens_per_second=trained["tokens"] / seconds,
        grad_norm_first_lstm=trained["grad_norm_first_lstm"],
        grad_norm_last_lstm=trained["grad_norm_last_lstm"],
        **validated,
    )


def _check_finite(epoch: int, loss: float, lr: float) -> None:
    if not math.isfinite(loss):
        raise TrainingDiverged(
            f"epoch {epoch}: the training loss is {loss} (lr {lr}); "
            "the weights are no longer usable, so the run stops here"
        )


def _build(
    config: RunConfig, dataset: PreparedDataset, device: torch.device, resume: TrainingState | None
) -> tuple[Tagger, torch.optim.Optimizer, AveragedModel | None]:
    """The model, optimizer and weight average (if asked for), and the random generators,
    as `resume` left them."""
    model = make_tagger(config, dataset).to(device)
    optimizer = make_optimizer(model, config.train)
    if resume is not None:
        model.load_state_dict(resume.model_state)
        # A copy: torch keeps CPU moment tensors as given, and the steps that follow would
        # change the caller's saved state in place.
        optimizer.load_state_dict(copy.deepcopy(resume.optimizer_state))
    average = weight_average(model, config.train)
    if average is not None and resume is not None and resume.average_state:
        average.load_state_dict(resume.average_state)
    if resume is not None and resume.rng_state:
        # After the model's initial weights, which drew from the seed: the epochs go on
        # drawing where the interrupted run stopped.
        restore_random_states(resume.rng_state)
    return model, optimizer, average


def make_tagger(config: RunConfig, dataset: PreparedDataset) -> Tagger:
    """A new tagger of `config.model`'s shape for `dataset`, on the CPU: its vocabulary and
    tag set, and the joint heads and word counts that training uses."""
    train_tokens = dataset.splits["train"].tokens
    word_counts = torch.from_numpy(np.bincount(train_tokens, minlength=len(dataset.words)))
    return Tagger(
        config.model,
        len(dataset.words),
        dataset.num_classes,
        len(dataset.chars),
        word_counts,
        joint_classes={column: len(labels) for column, labels in dataset.joint_tags.items()},
    )


def _next_state(
    state: TrainingState,
    result: EpochResult,
    model: Tagger,
    optimizer: torch.optim.Optimizer,
    average: AveragedModel | None,
    objective: Objective,
) -> TrainingState:
    """The state after `result`'s epoch; the best weights (the selected ones, which `result`
    validated) change only on a strict gain on `objective`, and only they are copied.

    Copying the weights and the optimizer's moments every epoch, while the last epoch's
    copies were still held, made a deep model's training hold three times its training
    memory at its peak (the 40 x 256 baseline: 3.6 GB); callbacks write the state out at once.
    """
    score = result.metrics()[objective.metric]
    improved = state.best_score is None or objective.better(score, state.best_score)
    model_state = _on_cpu(model.state_dict())
    average_state = _on_cpu(average.state_dict()) if average is not None else {}
    best_state = state.best_state
    if improved:
        best_state = _copied(_selected_state(model_state, average_state))
    return TrainingState(
        epoch=result.epoch,
        model_state=model_state,
        optimizer_state=optimizer.state_dict(),
        best_state=best_state,
        average_state=average_state,
        best_epoch=result.epoch if improved else state.best_epoch,
        best_score=score if improved else state.best_score,
        history=[*state.history, asdict(result)],
        rng_state=random_states(),
    )


def _selected_state(model_state: dict, average_state: dict) -> dict:
    """The selected weights out of copies already made: the average's module once it has
    begun (AveragedModel keeps it under `module.`, beside its count `n_averaged`), else the
    training weights."""
    if not average_state or int(average_state["n_averaged"]) == 0:
        return model_state
    prefix = "module."
    return {k.removeprefix(prefix): v for k, v in average_state.items() if k.startswith(prefix)}


def _on_cpu(state_dict: dict) -> dict:
    """The tensors on the CPU: the same tensors where they are already there."""
    return {k: v.detach().to("cpu") for k, v in state_dict.items()}


def _copied(state_dict: dict) -> dict:
    return {k: v.clone() for k, v in state_dict.items()}
