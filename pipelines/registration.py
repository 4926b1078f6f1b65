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


def best_val_accuracy(run: Run) -> float:
    return run.data.metrics["best_val_accuracy"]


def candidates(runs: list[Run], role: str = TRIAL_ROLE) -> list[Run]:
    """Finished runs of `role` (search trials by default, never the baseline) that logged
    a model and a best validation accuracy."""
    return [
        run
        for run in runs
        if run.data.tags.get(ROLE_TAG) == role
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
    winner = max(found, key=best_val_accuracy)
    description = f"Best trial of sweep '{sweep.name}' ({source}), {run_summary(winner)}."
    return register_run(winner, description, {}, best_val_accuracy(winner), sweep, force)


def register_confirmed(
    winner: Run,
    seeds: list[Run],
    mean: float,
    sd: float,
    sweep: SweepConfig,
    source: str,
    force: bool,
) -> Registered:
    """Register the configuration with the best mean over its seed runs (`seeds`, whose
    validation accuracy has this `mean` and `sd`): the model of `winner`, its best seed
    run. The mean is what the champion rule compares."""
    description = (
        f"Best mean of sweep '{sweep.name}' ({source}) over {len(seeds)} seeds: validation "
        f"accuracy {100 * mean:.2f}% ± {100 * sd:.2f} (runs "
        f"{', '.join(run.info.run_id for run in seeds)}). This version is the best of them, "
        f"{run_summary(winner)}."
    )
    tags = {
        "val_mean": f"{mean:.6f}",
        "val_sd": f"{sd:.6f}",
        "seeds": ",".join(run.data.params["seed"] for run in seeds),
        "seed_run_ids": ",".join(run.info.run_id for run in seeds),
    }
    return register_run(winner, description, tags, mean, sweep, force)


def run_summary(run: Run) -> str:
    params, metrics = run.data.params, run.data.metrics
    return (
        f"run {run.info.run_id}: hidden_size {params['hidden_size']}, num_layers "
        f"{params['num_layers']}, epochs {params['epochs']}, seed {params['seed']}; best "
        f"validation accuracy {100 * metrics['best_val_accuracy']:.2f}% at epoch "
        f"{int(metrics['best_epoch'])}"
    )


def register_run(
    run: Run,
    description: str,
    tags: dict[str, str],
    val_accuracy: float,
    sweep: SweepConfig,
    force: bool,
) -> Registered:
    """Register `run`'s model under the sweep's alias; `best` follows the champion rule
    (postag.registry.champion_decision) on `val_accuracy` unless `force`."""
    alias = alias_for(sweep.name)
    promotion = register_candidate(
        run.data.tags[MODEL_URI_TAG],
        description,
        tags={"sweep": sweep.name, "run_id": run.info.run_id, **tags},
        val_accuracy=val_accuracy,
        validation_digest=run.data.params["validation_digest"],
        alias=alias,
        force=force,
    )
    return Registered(run, promotion.version, alias, promotion.reason)


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
