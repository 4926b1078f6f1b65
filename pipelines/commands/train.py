"""`postag train`: one run of one configuration, printed per epoch, summarised as JSON."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from pipelines.cli import INTERRUPTED_EXIT_CODE, fail
from pipelines.experiment import add_config_arguments, config_from_args
from postag.config import ConfigError, RunConfig, to_dict
from postag.data import dataset as datasets
from postag.data.readers import DataFormatError
from postag.data.sources import DataSourceError
from postag.files import write_text_atomically
from postag.models.checkpoint import save_checkpoint
from postag.training.trainer import EpochResult, TrainingDiverged, TrainingState, evaluate, fit

CHECKPOINT_NAME = "best.pt"
SUMMARY_NAME = "summary.json"
PROG = "postag train"


def format_epoch(result: EpochResult, epochs: int, averaged: bool = False) -> str:
    """One epoch's console line; `averaged` (train.ema_decay, train.swa_start) adds the
    training weights' own accuracy beside the average's."""
    raw = f" (raw {100 * result.raw_val_accuracy:6.2f}%)" if averaged else ""
    return (
        f"epoch {result.epoch:>3}/{epochs}  loss {result.train_loss:.4f}  "
        f"val_acc {100 * result.val_accuracy:6.2f}%{raw}  {result.epoch_seconds:6.1f}s  "
        f"{result.tokens_per_second:>8,.0f} tok/s  "
        f"grad first {result.grad_norm_first_lstm:.2e} last {result.grad_norm_last_lstm:.2e}"
    )


def run(config: RunConfig) -> dict:
    """Prepare data, train, test the best epoch; write checkpoint and summary; return it."""
    started = time.perf_counter()
    prepared = datasets.load(config.data)
    print(
        f"data {prepared.directory} (fingerprint {prepared.fingerprint}): "
        f"{len(prepared.words):,} words, {prepared.num_classes} classes, "
        + ", ".join(f"{k} {s.num_sentences:,} sentences" for k, s in prepared.splits.items()),
        flush=True,
    )

    def report(result: EpochResult, _: TrainingState) -> None:
        print(format_epoch(result, config.train.epochs, config.train.averages_weights), flush=True)

    fitted = fit(config, prepared, callbacks=[report])
    output_dir = Path(config.train.output_dir)
    checkpoint = save_checkpoint(
        output_dir / CHECKPOINT_NAME, fitted.model.state_dict(), config, prepared
    )
    summary = {
        "config": to_dict(config),
        "dataset": {
            "fingerprint": prepared.fingerprint,
            "vocabulary_size": len(prepared.words),
            "num_classes": prepared.num_classes,
        },
        "epochs": [result.__dict__ for result in fitted.history],
        "best_epoch": fitted.best_epoch,
        "objective": to_dict(config.train.objective),
        config.train.objective.best_metric: fitted.best_score,
        "checkpoint": str(checkpoint),
    }
    if "test" in prepared.splits:
        test = evaluate(
            fitted.model, prepared.splits["test"], config.train.batch_size, fitted.device
        )
        summary["test"] = test.as_dict()
    summary["wall_seconds"] = time.perf_counter() - started
    chosen_by = config.train.objective
    write_text_atomically(output_dir / SUMMARY_NAME, json.dumps(summary, indent=2))
    print(
        f"best epoch {fitted.best_epoch}: {chosen_by.metric} {chosen_by.shown(fitted.best_score)}"
        + (f", test_acc {100 * summary['test']['accuracy']:.2f}%" if "test" in summary else "")
        + f"; wrote {checkpoint} and {output_dir / SUMMARY_NAME}",
        flush=True,
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    try:
        run(config_from_args(args))
    except (ConfigError, DataFormatError, DataSourceError) as error:
        return fail(PROG, error, 2)
    except TrainingDiverged as error:
        return fail(PROG, error, 1, kind="training diverged")
    except KeyboardInterrupt:
        # best.pt is written only at the end, whole: an earlier one is left as it was.
        return fail(PROG, "no checkpoint was written", INTERRUPTED_EXIT_CODE, kind="interrupted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
