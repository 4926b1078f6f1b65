"""The sweep's points as Ray Tune hands them to trials: the search's fixed baseline and the
confirmation's (configuration, seed) points, list values among them, on a real Ray runtime.

Ray Tune 2.60 reads a list in `points_to_evaluate` as one nested key per item and fails
(KeyError: 0); each trial here must get every value whole, and build its run config."""

from __future__ import annotations

import json

import pytest
import ray
from ray import tune

from pipelines.sweep.setup.settings import build_sweep, plain_values
from pipelines.sweep.stages.confirmation import (
    Candidate,
    configuration_key,
    confirmation_param_space,
    confirmation_tune_config,
    seed_points,
)
from pipelines.sweep.stages.held import SearchPlan
from pipelines.sweep.stages.search import param_space, tune_config
from pipelines.sweep.trial.trainable import TrialConfigs, trial_name
from postag.config import ModelConfig, RunConfig, to_dict

RUN = RunConfig(model=ModelConfig(char_dim=8))
SWEEP = {
    "name": "kernels",
    "space": {"model.char_kernels": [[3], [2, 3, 4]], "train.lr": [0.01]},
    "baseline": {"model.char_kernels": [5], "train.lr": 0.01, "model.num_layers": 3},
    "confirm": {"top_k": 2, "seeds": 2},
}


@pytest.fixture(scope="module")
def ray_runtime():
    # A runtime of its own, never a cluster another test started (`ray start` names one).
    ray.init("local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def trial_values(space: dict, config: tune.TuneConfig, tmp_path) -> list[dict]:
    """Each trial's values, as the sweep's code reads them (plain_values)."""

    # Defined in here so that Ray pickles it whole: its workers cannot import tests/.
    def report_values(config: dict) -> None:
        tune.report({"val_accuracy": 0.5, "values": json.dumps(plain_values(config))})

    tuner = tune.Tuner(
        report_values,
        param_space=space,
        tune_config=config,
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
    )
    results = tuner.fit()
    assert not results.errors
    return [json.loads(result.metrics["values"]) for result in results]


def test_a_grid_with_a_list_valued_baseline_runs_every_point(ray_runtime, tmp_path):
    sweep = build_sweep(SWEEP, RUN)
    values = trial_values(
        param_space(sweep, SearchPlan.whole(sweep)),
        tune_config(sweep, RUN, SearchPlan.whole(sweep)),
        tmp_path,
    )
    kernels = sorted(v["model.char_kernels"] for v in values)
    assert kernels == [[2, 3, 4], [3], [5]]
    baseline = next(v for v in values if sweep.is_baseline(v))
    config = TrialConfigs(to_dict(RUN), sweep).resolve(baseline, "cpu")
    assert config.model.char_kernels == (5,) and config.model.num_layers == 3


def test_confirmation_trials_get_their_list_values_whole(ray_runtime, tmp_path):
    sweep = build_sweep(SWEEP, RUN)
    # The search runs themselves play no part in the points.
    chosen = [
        Candidate(None, {"model.char_kernels": [2, 3, 4], "train.lr": 0.01}),
        Candidate(None, {"model.char_kernels": [3], "train.lr": 0.01}),
    ]
    points = seed_points(chosen, [1, 2])
    values = trial_values(
        confirmation_param_space(points), confirmation_tune_config(sweep, points), tmp_path
    )
    assert sorted((v["model.char_kernels"], v["train.seed"]) for v in values) == [
        ([2, 3, 4], 1),
        ([2, 3, 4], 2),
        ([3], 1),
        ([3], 2),
    ]
    # A seed run is matched to its configuration, named and configured by the plain values.
    assert {configuration_key(p) for p in points} == {configuration_key(c.point) for c in chosen}
    assert trial_name(points[0], baseline=False) == "char_kernels2x3x4-lr0.01-seed1"
    config = TrialConfigs(to_dict(RUN), sweep).resolve(points[0], "cpu")
    assert (config.model.char_kernels, config.train.seed) == ((2, 3, 4), 1)
