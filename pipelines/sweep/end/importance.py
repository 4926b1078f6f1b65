"""What mattered in a sweep: each searched axis's importance for its objective's best figure.

Optuna's fANOVA evaluator does the statistics on a study rebuilt from the sweep's finished
trials, whatever searched them (grid or Optuna), and Optuna's plots draw them; only the
translation from MLflow runs to Optuna trials lives here.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from pipelines.plots import pyplot
from pipelines.runs import TrialRun, candidates, score
from pipelines.sweep.setup.settings import SEED_KEY, Range, SweepSettings, Value
from postag.training.objective import Objective

# fANOVA fits a random forest: a fixed seed gives the same figures for the same trials.
FANOVA_SEED = 0
IMPORTANCE_PNG = "param_importance.png"
PARALLEL_PNG = "parallel_coordinates.png"


@dataclass(frozen=True)
class Importance:
    """Each varied axis's share of the variance in the trials' best figure on the sweep's
    objective (sums to 1)."""

    shares: dict[str, float]
    trials: int
    objective: Objective

    def metrics(self) -> dict[str, float]:
        """As the parent run's metrics: `importance.<axis>`."""
        return {f"importance.{axis}": share for axis, share in self.shares.items()}

    def line(self) -> str:
        return ", ".join(f"{axis} {share:.2f}" for axis, share in self.shares.items())

    def markdown(self) -> str:
        lines = [
            "## What mattered",
            "",
            f"fANOVA importance for best {self.objective.phrase} over {self.trials} finished "
            "trials (Optuna's `FanovaImportanceEvaluator`; shares sum to 1):",
            "",
            "| axis | importance |",
            "| --- | ---: |",
        ]
        lines += [f"| {axis} | {share:.3f} |" for axis, share in self.shares.items()]
        return "\n".join(lines)


def distribution(axis: list[Value] | Range) -> BaseDistribution:
    """The Optuna distribution of one sweep axis: numbers stay ordered, others are choices."""
    if isinstance(axis, Range):
        if isinstance(axis.low, int) and isinstance(axis.high, int):
            return IntDistribution(axis.low, axis.high, log=axis.log)
        return FloatDistribution(axis.low, axis.high, log=axis.log)
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in axis)
    if numbers and all(isinstance(v, int) for v in axis):
        return IntDistribution(min(axis), max(axis))
    if numbers:
        return FloatDistribution(min(axis), max(axis))
    return CategoricalDistribution(tuple(axis))


def trial_value(run: TrialRun, dotted: str, dist: BaseDistribution) -> Value:
    """The value a run's parameters hold for axis `dotted` (params are logged as text)."""
    text = run.value(dotted)
    if isinstance(dist, IntDistribution):
        return int(text)
    if isinstance(dist, FloatDistribution):
        return float(text)
    return next(choice for choice in dist.choices if str(choice) == text)


def varied_axes(sweep: SweepSettings) -> dict[str, tuple[str, BaseDistribution]]:
    """The axes that took more than one value, by parameter name: (dotted key, distribution).

    An axis of one value explains nothing, so it is left out. So is the seed: what it
    "explains" is noise, and a sweep over seeds alone (best.yaml's) has no importance to tell.
    """
    varied = {}
    for key, axis in sweep.space.items():
        if key != SEED_KEY and took_several_values(axis):
            varied[key.rpartition(".")[2]] = (key, distribution(axis))
    return varied


def took_several_values(axis: list[Value] | Range) -> bool:
    return isinstance(axis, Range) or len(set(map(str, axis))) > 1


def study_of(runs: list[TrialRun], sweep: SweepSettings) -> optuna.Study:
    """An Optuna study holding the sweep's finished, non-baseline trials."""
    axes = varied_axes(sweep)
    study = optuna.create_study(direction=sweep.primary.direction)
    for run in candidates(runs):
        params = {name: trial_value(run, key, dist) for name, (key, dist) in axes.items()}
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions={name: dist for name, (_, dist) in axes.items()},
                value=score(run),
            )
        )
    return study


def fanova() -> optuna.importance.BaseImportanceEvaluator:
    """Optuna's fANOVA evaluator, seeded. Imported when a sweep ends: its random forest is
    scikit-learn's, over a second of imports that a driver stopped earlier, and every test
    process that loads the driver, would pay for nothing."""
    from optuna.importance import FanovaImportanceEvaluator

    return FanovaImportanceEvaluator(seed=FANOVA_SEED)


def parameter_importance(
    runs: list[TrialRun], sweep: SweepSettings
) -> tuple[Importance | None, str]:
    """fANOVA importance of the searched axes, or None and why it cannot be told."""
    axes = varied_axes(sweep)
    if not axes:
        if took_several_values(sweep.space.get(SEED_KEY, [])):
            return None, "only the seed varied: its share would be noise, not a setting's"
        return None, "no axis took more than one value"
    if len(axes) == 1:
        # Its share is 1 whatever the scores: the figure and the metric would say nothing,
        # and a random forest and its plots cost the sweep's end 3 CPU-s of imports.
        (name,) = axes
        return None, f"only {name} varied, so it holds all the variance; the trial table shows how"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = study_of(runs, sweep)
    if len(study.trials) < 2:
        return None, f"{len(study.trials)} finished trial(s); importance needs two or more"
    # fANOVA splits the variance of the scores: with none, there is nothing to share out.
    if len({trial.value for trial in study.trials}) == 1:
        return None, "every finished trial scored the same"
    shares = optuna.importance.get_param_importances(study, evaluator=fanova())
    return Importance(dict(shares), len(study.trials), sweep.primary), ""


def importance_figures(runs: list[TrialRun], sweep: SweepSettings, folder: Path) -> list[Path]:
    """The importance bar chart and the axes-against-accuracy parallel coordinates."""
    study = study_of(runs, sweep)
    target = sweep.primary.heading
    plt = pyplot()  # before Optuna's plots import matplotlib: files only, never a window
    written = []
    # Optuna marks its matplotlib plots experimental; the warning tells a user nothing.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for name, draw in (
            (
                IMPORTANCE_PNG,
                lambda: optuna.visualization.matplotlib.plot_param_importances(
                    study, evaluator=fanova(), target_name=target
                ),
            ),
            (
                PARALLEL_PNG,
                lambda: optuna.visualization.matplotlib.plot_parallel_coordinate(
                    study, target_name=target
                ),
            ),
        ):
            axes = draw()
            axes.figure.tight_layout()
            axes.figure.savefig(folder / name, dpi=120)
            plt.close(axes.figure)
            written.append(folder / name)
    return written


def importance_markdown(importance: Importance | None, why: str) -> str:
    """The `What mattered` section of trials.md."""
    if importance is None:
        return f"## What mattered\n\nNot measured: {why}."
    return importance.markdown()
