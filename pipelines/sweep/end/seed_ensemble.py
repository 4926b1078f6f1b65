"""The winning configuration's seeds as one model (`sweep.register: ensemble`).

The ensemble is a run of its own under the sweep's parent run (role `ensemble`): it holds
the model (the members' checkpoints, averaged by postag/models/ensemble.py), its figures on the
validation data, measured by the function that validates a trial's epochs, and what it
costs to tag beside one member, measured by the function a Pareto search's trial uses.
Whether it is registered, in place of its best seed, is the winner's rule
(pipelines/sweep/end/winner.py), which reads its validation figure as it reads a trial's best
epoch.
"""

from __future__ import annotations

import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import torch
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from pipelines.names import (
    ENSEMBLE_MEMBERS_PARAM,
    ENSEMBLE_ROLE,
    ENSEMBLE_SEEDS_PARAM,
    MEMBER_TAGGING_TIME,
    MEMBERS_TAG,
    MLFLOW_RUN_NAME,
    MODEL_URI_TAG,
    ROLE_TAG,
    SWEEP_TAG,
)
from pipelines.provenance import code_tags
from pipelines.runs import TrialRun, score
from pipelines.sweep.lifecycle.life import SweepLife
from pipelines.sweep.setup.settings import SEED_KEY
from postag.data.dataset import PreparedDataset
from postag.evaluation.cost import num_parameters, tagging_ms_per_sentence
from postag.models.ensemble import TaggerEnsemble, load_ensemble
from postag.serving.registry import log_tagger, model_checkpoints
from postag.training.objective import BEST_PREFIX, NUM_PARAMETERS, TAGGING_TIME, Objective
from postag.training.trainer import validation_metrics

# Params of the members' own that the ensemble does not share.
MEMBER_ONLY_PARAMS = (SEED_KEY,)


@dataclass(frozen=True)
class Ensemble:
    """The ensemble's run as read back, and its members' runs."""

    run: TrialRun
    members: list[TrialRun]

    @property
    def seeds(self) -> str:
        return seeds_of(self.members)

    @property
    def member_ids(self) -> str:
        return run_ids(self.members)

    @property
    def slowdown(self) -> float:
        """Its tagging time over one member's."""
        return self.run.metrics[TAGGING_TIME] / self.run.metrics[MEMBER_TAGGING_TIME]

    def cost(self) -> str:
        ensemble, member = self.run.metrics[TAGGING_TIME], self.run.metrics[MEMBER_TAGGING_TIME]
        return (
            f"{ensemble:.3g} ms a sentence against one member's {member:.3g} "
            f"({self.slowdown:.1f}x; one CPU thread, the validation data)"
        )

    def line(self, objective: Objective) -> str:
        """The ensemble against its members, and its cost, in one line."""
        members = [score(member) for member in self.members]
        return (
            f"ensemble of seeds {self.seeds}: {objective.label} "
            f"{objective.shown(score(self.run))}, its members "
            f"{objective.shown(statistics.fmean(members))} on average "
            f"(best {objective.shown(objective.best(members))}); tagging {self.cost()}"
        )


def ensemble_of_seeds(life: SweepLife, members: list[TrialRun], data: PreparedDataset) -> Ensemble:
    """The ensemble of `members`: the run that holds it already (the sweep concluded before,
    or stopped once it was made), else a new one."""
    objective = life.job.sweep.primary
    held = [
        run
        for run in life.parent.ensemble_runs(objective)
        if run.tags.get(MEMBERS_TAG) == run_ids(members) and run.is_candidate(ENSEMBLE_ROLE)
    ]
    if held:
        return Ensemble(held[-1], members)
    made = mlflow.MlflowClient().get_run(make_ensemble(life, members, data))
    return Ensemble(TrialRun.of(made, objective), members)


def run_ids(members: list[TrialRun]) -> str:
    """The members' runs as the ensemble's run and version record them, in order."""
    return ",".join(member.run_id for member in members)


def seeds_of(members: list[TrialRun], separator: str = ",") -> str:
    return separator.join(member.seed for member in members)


def make_ensemble(life: SweepLife, members: list[TrialRun], data: PreparedDataset) -> str:
    """A new run under the parent holding the ensemble of `members`, its validation figures
    and its costs; its id. Closed FAILED if anything in it fails."""
    created = mlflow.MlflowClient().create_run(
        life.state.experiment_id,
        tags={
            MLFLOW_RUN_NAME: f"ensemble-seeds-{seeds_of(members, '-')}",
            MLFLOW_PARENT_RUN_ID: life.state.parent_run_id,
            ROLE_TAG: ENSEMBLE_ROLE,
            SWEEP_TAG: life.job.sweep.name,
            MEMBERS_TAG: run_ids(members),
            **code_tags(),
        },
    )
    with (
        mlflow.start_run(run_id=created.info.run_id, nested=True),
        tempfile.TemporaryDirectory() as folder,
    ):
        checkpoints = [
            model_checkpoints(member.model_uri, Path(folder) / member.run_id)[0]
            for member in members
        ]
        tagger = load_ensemble(checkpoints)
        mlflow.log_params(ensemble_params(members))
        mlflow.log_metrics(measured(tagger.model, data, life.job.run.train.batch_size))
        info = log_tagger(checkpoints, params={"members": str(len(members))})
        mlflow.set_tag(MODEL_URI_TAG, info.model_uri)
    return created.info.run_id


def ensemble_params(members: list[TrialRun]) -> dict[str, str]:
    """The configuration the members share (the first's params less its seed), and who
    they are."""
    shared = {k: v for k, v in members[0].params.items() if k not in MEMBER_ONLY_PARAMS}
    return {
        **shared,
        ENSEMBLE_MEMBERS_PARAM: str(len(members)),
        ENSEMBLE_SEEDS_PARAM: seeds_of(members),
    }


def measured(model: TaggerEnsemble, data: PreparedDataset, batch_size: int) -> dict[str, float]:
    """Its figures on the validation data, under the names a trial's best epoch has them
    (any objective reads its score), and its costs beside one member's."""
    dev, cpu = data.splits["dev"], torch.device("cpu")
    figures = validation_metrics(model.to(cpu), dev, batch_size, cpu)
    return {
        **{BEST_PREFIX + name: value for name, value in figures.items()},
        TAGGING_TIME: tagging_ms_per_sentence(model, dev),
        MEMBER_TAGGING_TIME: tagging_ms_per_sentence(model.members[0], dev),
        NUM_PARAMETERS: float(num_parameters(model)),
    }
