"""Where a sweep's winner is registered: the best finished trial, by the champion rule."""

from __future__ import annotations

from dataclasses import dataclass

from mlflow.entities import Run

from pipelines.sweep_config import SweepConfig
from pipelines.tracking import FAILED, FINISHED, MODEL_URI_TAG, ROLE_TAG, TRIAL_ROLE
from postag.registry import REGISTERED_MODEL, ModelNotFound, alias_for, register_candidate

# What to do about a model the registry lacks, by what is missing.
ADVICE = {
    "model": "run `make sweep` first",
    "alias": "run `make sweep` first",
    "version": "see the versions with `make ui`",
}


def not_found_message(error: ModelNotFound) -> str:
    advice = ADVICE.get(error.missing)
    return f"{error}: {advice}" if advice else str(error)


class SweepFailed(RuntimeError):
    """The sweep concluded but left nothing to register (every trial failed)."""


@dataclass(frozen=True)
class Registered:
    winner: Run
    version: str
    alias: str
    # One line: did `best` move, and why.
    reason: str

    @property
    def uri(self) -> str:
        return f"models:/{REGISTERED_MODEL}@{self.alias}"

    @property
    def version_uri(self) -> str:
        return f"models:/{REGISTERED_MODEL}/{self.version}"


def candidates(runs: list[Run]) -> list[Run]:
    """Finished non-baseline trials that logged a model and a best validation accuracy."""
    return [
        run
        for run in runs
        if run.data.tags.get(ROLE_TAG) == TRIAL_ROLE
        and run.info.status == FINISHED
        and MODEL_URI_TAG in run.data.tags
        and "best_val_accuracy" in run.data.metrics
    ]


def register_winner(runs: list[Run], sweep: SweepConfig, source: str, force: bool) -> Registered:
    """Register the candidate with the highest best_val_accuracy as a new version.

    It always gets the sweep's own alias; `best` follows the champion rule
    (postag.registry.champion_decision) unless `force`.
    """
    found = candidates(runs)
    if not found:
        raise SweepFailed(nothing_to_register(runs, sweep))
    winner = max(found, key=lambda run: run.data.metrics["best_val_accuracy"])
    params, metrics = winner.data.params, winner.data.metrics
    description = (
        f"Best trial of sweep '{sweep.name}' ({source}), run {winner.info.run_id}: "
        f"hidden_size {params['hidden_size']}, num_layers {params['num_layers']}, epochs "
        f"{params['epochs']}; best validation accuracy {100 * metrics['best_val_accuracy']:.2f}% "
        f"at epoch {int(metrics['best_epoch'])}."
    )
    alias = alias_for(sweep.name)
    promotion = register_candidate(
        winner.data.tags[MODEL_URI_TAG],
        description,
        tags={"sweep": sweep.name, "run_id": winner.info.run_id},
        val_accuracy=metrics["best_val_accuracy"],
        validation_digest=params["validation_digest"],
        alias=alias,
        force=force,
    )
    return Registered(winner, promotion.version, alias, promotion.reason)


def nothing_to_register(runs: list[Run], sweep: SweepConfig) -> str:
    failed = [run for run in runs if run.info.status == FAILED]
    last_error = next((r.data.tags["error"] for r in failed if "error" in r.data.tags), "")
    return (
        f"sweep '{sweep.name}': no trial finished with a model to register "
        f"({len(failed)} of {len(runs)} failed); the last lines of one error:\n"
        + "\n".join(last_error.strip().splitlines()[-3:])
    )


def trial_table(runs: list[Run]) -> str:
    """A Markdown table of the sweep's runs, best first, the baseline marked."""
    rows = sorted(runs, key=lambda run: -run.data.metrics.get("best_val_accuracy", -1.0))
    lines = [
        "| run | hidden | layers | epochs | status | best val acc "
        "| grad norm first / last LSTM layer |",
        "| --- | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    for run in rows:
        p, m = run.data.params, run.data.metrics
        accuracy = f"{100 * m['best_val_accuracy']:.2f}%" if "best_val_accuracy" in m else "-"
        grads = (
            f"{m['grad_norm_first_lstm']:.2e} / {m['grad_norm_last_lstm']:.2e}"
            if "grad_norm_first_lstm" in m
            else "-"
        )
        lines.append(
            f"| {run.info.run_name} | {p.get('hidden_size')} | {p.get('num_layers')} "
            f"| {p.get('epochs')} | {run.info.status} | {accuracy} | {grads} |"
        )
    return "\n".join(lines)
