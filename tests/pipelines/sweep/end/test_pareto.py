"""The Pareto front as the sweep's end reads it from its runs: the trials no other beats on
both objectives, best on the first first, and the table a person reads."""

from __future__ import annotations

from pipelines.names import FINISHED, TRIAL_ROLE
from pipelines.runs import TrialRun
from pipelines.sweep.end.pareto import Member, front_table, pareto_front
from pipelines.sweep.setup.settings import build_sweep
from postag.config import RunConfig

SWEEP = build_sweep(
    {
        "name": "p",
        "search": "optuna",
        "space": {"model.hidden_size": {"low": 16, "high": 256}},
        "baseline": {"model.hidden_size": 8},
        "objectives": [
            {"metric": "val_accuracy", "mode": "max"},
            {"metric": "tagging_ms_per_sentence", "mode": "min"},
        ],
    },
    RunConfig(),
)


def run(name: str, accuracy: float | None, ms: float | None, status: str = FINISHED) -> TrialRun:
    metrics = {}
    if accuracy is not None:
        metrics["best_val_accuracy"] = accuracy
    if ms is not None:
        metrics["tagging_ms_per_sentence"] = ms
    return TrialRun(
        run_id=name,
        name=name,
        status=status,
        role=TRIAL_ROLE,
        trial_id=name,
        model_uri=f"models:/{name}",
        score=accuracy,
        best_epoch=1,
        params={"model.hidden_size": name.removeprefix("h")},
        metrics=metrics,
        tags={},
    )


def test_the_front_holds_the_trials_no_other_beats_on_both():
    runs = [
        run("h256", 0.81, 2.0),  # the most accurate
        run("h128", 0.80, 1.0),
        run("h96", 0.79, 1.5),  # beaten by h128 on both
        run("h32", 0.75, 0.4),  # the fastest
        run("h64", 0.75, 0.6),  # as accurate as h32, slower
        run("h16", 0.70, None),  # never measured its cost (stopped early)
        run("h48", 0.90, 0.1, status="FAILED"),  # not a candidate
    ]
    assert [r.name for r in pareto_front(runs, SWEEP)] == ["h256", "h128", "h32"]


def test_equal_figures_are_both_on_the_front():
    runs = [run("h64", 0.80, 1.0), run("h65", 0.80, 1.0), run("h32", 0.70, 2.0)]
    assert sorted(r.name for r in pareto_front(runs, SWEEP)) == ["h64", "h65"]


def test_the_front_table_gives_each_member_s_figures_values_and_version():
    members = [Member(run("h256", 0.81, 2.0), (0.81, 2.0), "postag-tagger", "7")]
    assert front_table(members, SWEEP).splitlines() == [
        "| rank | run | version | best val acc | ms / sentence | model.hidden_size |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
        "| 1 | h256 | 7 | 81.00% | 2 | 256 |",
    ]
