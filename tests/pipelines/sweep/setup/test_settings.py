import pytest

from pipelines.sweep.setup.settings import Range, build_sweep
from pipelines.sweep.stages.held import SearchPlan
from pipelines.sweep.stages.search import param_space, tune_config
from pipelines.sweep.trial.trainable import TrialConfigs
from postag.config import ConfigError, RunConfig, TrainConfig, to_dict
from postag.training.objective import Objective

SWEEP = {
    "name": "s",
    "space": {"model.hidden_size": [64, 128], "train.epochs": [1, 2]},
    "baseline": {"model.hidden_size": 256, "train.epochs": 1, "train.max_batches_per_epoch": 3},
}
PARETO = [
    {"metric": "val_accuracy", "mode": "max"},
    {"metric": "tagging_ms_per_sentence", "mode": "min"},
]


def test_baseline_is_known_by_its_point_and_gets_its_extras():
    sweep = build_sweep(SWEEP, RunConfig())
    assert sweep.baseline_point() == {"model.hidden_size": 256, "train.epochs": 1}
    assert sweep.is_baseline({"model.hidden_size": 256, "train.epochs": 1})
    assert not sweep.is_baseline({"model.hidden_size": 128, "train.epochs": 1})
    config = TrialConfigs({}, sweep).resolve({"model.hidden_size": 256, "train.epochs": 1}, "cpu")
    assert config.train.max_batches_per_epoch == 3
    assert config.train.num_threads == sweep.cpus_per_trial
    ordinary = TrialConfigs({}, sweep).resolve({"model.hidden_size": 64, "train.epochs": 2}, "cpu")
    assert (ordinary.model.hidden_size, ordinary.train.max_batches_per_epoch) == (64, None)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"space": {"model.hiden_size": [1]}}, "unknown key 'sweep.space.model.hiden_size'"),
        ({"baseline": {"model.hidden_size": 1}}, "missing \\['train.epochs'\\]"),
        (
            {"space": {"model.hidden_size": {"low": 8, "high": 64}, "train.epochs": [1]}},
            "sweep.space.model.hidden_size: a range needs search: optuna",
        ),
        ({"search": "random"}, "'sweep.search' must be one of 'grid', 'optuna'"),
        ({"gpus_per_trial": "half"}, "'sweep.gpus_per_trial' must be float"),
        ({"colour": 1}, "unknown key 'sweep.colour'"),
        # Every value a trial can take is checked before any trial starts.
        (
            {"space": {"model.hidden_size": [64, 0], "train.epochs": [1]}},
            "sweep.space.model.hidden_size: 'model.hidden_size' must be at least 1, got 0",
        ),
        (
            {"space": {"model.hidden_size": [64], "train.epochs": [0, 2]}},
            "sweep.space.train.epochs: 'train.epochs' must be at least 1, got 0",
        ),
        (
            {"baseline": {**SWEEP["baseline"], "train.max_batches_per_epoch": -1}},
            "sweep.baseline: 'train.max_batches_per_epoch' must be at least 1, got -1",
        ),
        (
            {"space": {"model.hidden_size": [], "train.epochs": [1]}},
            "sweep.space.model.hidden_size: an axis needs at least one value",
        ),
        # Data is prepared once for the whole sweep: it cannot vary per trial.
        (
            {"space": {**SWEEP["space"], "data.max_train_sentences": [10, 20]}},
            "'sweep.space.data.max_train_sentences': data settings cannot vary between trials",
        ),
        (
            {"baseline": {**SWEEP["baseline"], "data.lowercase_words": True}},
            "'sweep.baseline.data.lowercase_words': data settings cannot vary between trials",
        ),
        ({"max_concurrent_trials": 0}, "'sweep.max_concurrent_trials' must be at least 1, got 0"),
        ({"cpus_per_trial": 0}, "'sweep.cpus_per_trial' must be above 0"),
        ({"asha": {"reduction_factor": 1}}, "'sweep.asha.reduction_factor' must be at least 2"),
        # A baseline on a grid point would be mistaken for that trial.
        (
            {
                "baseline": {"model.hidden_size": 64, "train.epochs": 1},
                "space": {"model.hidden_size": [64, 128], "train.epochs": [1, 2]},
            },
            "sweep.baseline: its values on the searched axes \\(model.hidden_size=64, "
            "train.epochs=1\\) are also a point of sweep.space",
        ),
        # An ensemble is made of the winner's seeds: a sweep that trains none has none.
        (
            {"register": "ensemble"},
            "sweep.register: 'ensemble' averages the seeds of the winning configuration, and "
            "this sweep trains none: add sweep.confirm, or search train.seed",
        ),
        ({"register": "mean"}, "'sweep.register' must be one of 'run', 'ensemble', got 'mean'"),
        ({"confirm": {"top_k": 2, "seeds": 1}}, "'sweep.confirm.seeds' must be at least 2, got 1"),
        ({"confirm": {"top_k": 0}}, "'sweep.confirm.top_k' must be at least 1, got 0"),
        ({"confirm": {"seed": 3}}, "unknown key 'sweep.confirm.seed'"),
        # The confirmation varies the seed itself.
        (
            {
                "confirm": {},
                "space": {**SWEEP["space"], "train.seed": [0, 1]},
                "baseline": {**SWEEP["baseline"], "train.seed": 9},
            },
            "sweep.confirm trains the best configurations with new values of train.seed",
        ),
        # The objective: a metric the trainer logs, a mode, one or two, refused before
        # anything starts with the allowed names listed.
        (
            {"objective": {"metric": "val_f1", "mode": "max"}},
            "'sweep.objective.metric': unknown metric 'val_f1'; the validation metrics a run "
            "logs each epoch are val_accuracy, val_macro_f1, val_loss",
        ),
        (
            {"objective": {"metric": "val_loss", "mode": "down"}},
            "'sweep.objective.mode' must be one of 'max', 'min', got 'down'",
        ),
        ({"objective": {"metric": "val_loss"}}, "'sweep.objective.mode' is required and missing"),
        (
            {"objective": {"metric": "tagging_ms_per_sentence", "mode": "min"}},
            "'sweep.objective.metric': tagging_ms_per_sentence is measured once",
        ),
        (
            {"objectives": [{"metric": "val_accuracy", "mode": "max"}]},
            "'sweep.objectives' takes two entries \\(a Pareto search\\), got 1",
        ),
        (
            {
                "objective": {"metric": "val_loss", "mode": "min"},
                "objectives": [PARETO[0], PARETO[1]],
            },
            "'sweep.objective' and 'sweep.objectives' both given",
        ),
        (
            {"objectives": [PARETO[1], PARETO[0]]},
            "'sweep.objectives\\[0\\].metric': tagging_ms_per_sentence is measured once",
        ),
        ({"objectives": [PARETO[0], PARETO[0]]}, "'sweep.objectives' names val_accuracy twice"),
        ({"objectives": PARETO, "scheduler": "asha"}, "'sweep.scheduler: asha' stops trials"),
        ({"objectives": PARETO, "confirm": {}}, "'sweep.confirm' retrains the single best"),
        ({"registered_model": "team/tagger"}, "'sweep.registered_model' 'team/tagger': a name"),
        ({"registered_model": "tagger@v2"}, "a name without '/' or '@'"),
        ({"experiment": " "}, "'sweep.experiment' must be a name"),
        (
            {"baseline": {**SWEEP["baseline"], "train.objective": "val_loss"}},
            "'sweep.baseline.train.objective': the sweep's trials are all judged by one objective",
        ),
    ],
)
def test_bad_sweep_sections_fail_naming_the_key(change, message):
    with pytest.raises(ConfigError, match=message):
        build_sweep({**SWEEP, **change}, RunConfig())


def test_without_an_objective_a_sweep_maximises_validation_accuracy():
    sweep = build_sweep(SWEEP, RunConfig())
    assert sweep.primary == Objective("val_accuracy", "max") and not sweep.pareto


def test_the_objective_reaches_every_trial_config_and_a_different_one_is_refused():
    sweep = build_sweep({**SWEEP, "objective": {"metric": "val_loss", "mode": "min"}}, RunConfig())
    config = TrialConfigs(to_dict(RunConfig()), sweep).resolve({"train.epochs": 1}, "cpu")
    assert config.train.objective == Objective("val_loss", "min")
    # The experiment's own train.objective must not say otherwise, or it would be ignored.
    other = RunConfig(train=TrainConfig(objective=Objective("val_macro_f1", "max")))
    with pytest.raises(ConfigError, match="'train.objective' \\(val_macro_f1 \\(max\\)\\) is not"):
        build_sweep({**SWEEP, "objective": {"metric": "val_loss", "mode": "min"}}, other)


def test_a_pareto_search_names_its_costs_and_ranks_by_its_first_objective():
    space = {"model.hidden_size": {"low": 64, "high": 128}, "train.epochs": [1, 2]}
    values = {**SWEEP, "search": "optuna", "space": space, "objectives": PARETO}
    sweep = build_sweep(values, RunConfig())
    assert sweep.pareto and sweep.costs == ("tagging_ms_per_sentence",)
    assert sweep.primary.metric == "val_accuracy"
    config = tune_config(sweep, RunConfig(), SearchPlan.whole(sweep))
    # Two metrics are the searcher's own; Tune's TuneConfig takes one and gets none.
    assert config.metric is None
    searcher = config.search_alg.searcher
    assert searcher.metric == ["best_val_accuracy", "tagging_ms_per_sentence"]
    assert searcher.mode == ["max", "min"]


def test_optuna_space_uses_integer_ranges_and_choices():
    space = {"model.hidden_size": {"low": 8, "high": 64, "log": True}, "train.epochs": [1, 2]}
    sweep = build_sweep({**SWEEP, "search": "optuna", "space": space}, RunConfig())
    space = param_space(sweep, SearchPlan.whole(sweep))
    assert isinstance(sweep.space["model.hidden_size"], Range)
    assert (space["model.hidden_size"].lower, space["model.hidden_size"].upper) == (8, 65)
    assert space["train.epochs"].categories == [1, 2]


@pytest.mark.parametrize(
    ("axis", "message"),
    [
        ({"low": 1e-2, "high": 1e-4}, "'sweep.space.train.lr': low 0.01 is above high 0.0001"),
        ({"low": 0.0, "high": 1e-2, "log": True}, "a log range needs low above 0"),
        ({"low": -1.0, "high": 1e-2}, "sweep.space.train.lr: 'train.lr' must be above 0"),
    ],
)
def test_bad_search_ranges_fail_naming_the_key(axis, message):
    space = {**SWEEP["space"], "train.lr": axis}
    baseline = {**SWEEP["baseline"], "train.lr": 1e-3}
    with pytest.raises(ConfigError, match=message):
        build_sweep(
            {**SWEEP, "search": "optuna", "space": space, "baseline": baseline}, RunConfig()
        )


def test_a_missing_required_section_fails_naming_it():
    without_baseline = {k: v for k, v in SWEEP.items() if k != "baseline"}
    with pytest.raises(ConfigError, match="'sweep.baseline' is required and missing"):
        build_sweep(without_baseline, RunConfig())


def test_a_searched_weight_average_that_clashes_with_the_run_config_fails_at_load():
    run = RunConfig(train=TrainConfig(ema_decay=0.999))
    space = {**SWEEP["space"], "train.swa_start": [0.25, 0.5]}
    baseline = {**SWEEP["baseline"], "train.swa_start": 0.75}
    clash = "'train.swa_start' and 'train.ema_decay' each choose the weights that are shipped"
    with pytest.raises(ConfigError, match=clash):
        build_sweep({**SWEEP, "space": space, "baseline": baseline}, run)


def test_an_optuna_baseline_outside_a_choice_axis_is_refused_naming_the_key():
    """Optuna takes the baseline as a point of its space: outside a choice it fails at start
    (a range may leave it outside)."""
    space = {"model.hidden_size": [8, 16], "model.num_layers": [1, 2]}
    values = {**SWEEP, "search": "optuna", "space": space}
    values["baseline"] = {"model.hidden_size": 8, "model.num_layers": 40}
    with pytest.raises(ConfigError, match=r"sweep.baseline.model.num_layers: 40 is not one of"):
        build_sweep(values, RunConfig())
    values["space"] = {**space, "model.num_layers": {"low": 1, "high": 2}}
    assert build_sweep(values, RunConfig()).baseline["model.num_layers"] == 40
