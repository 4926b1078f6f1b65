"""A model's evaluation on a test file, as a sweep's conclusion and `postag evaluate` both
run it: the figures, the tables and pictures of reports/, and the MLflow evaluation run
linked to the model's version. The command itself is pipelines/commands/evaluate.py.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from pipelines import plots
from pipelines.names import BASELINE_ROLE, MEMBER_TAGGING_TIME
from pipelines.runs import read_trial_runs
from pipelines.tracking import DataInput, child_runs, log_evaluation
from postag.data.dataset import split_file
from postag.data.readers import DataFormatError, read_sentences
from postag.data.sources import DataSourceError, sha256_of
from postag.evaluation.cost import tagger_ms_per_sentence
from postag.evaluation.scoring import EvaluationReport, evaluate_tagger
from postag.models.checkpoint import LoadedTagger
from postag.models.ensemble import members_of
from postag.serving.registry import load_tagger
from postag.training.objective import TAGGING_TIME, Objective


def per_tag_rows(report: EvaluationReport) -> list[dict]:
    rows = [
        {
            "tag": s.tag,
            "precision": s.precision,
            "recall": s.recall,
            "f1": s.f1,
            "support": s.support,
        }
        for s in sorted(report.per_tag, key=lambda s: -s.support)
    ]
    rows += [
        {
            "tag": f"{tag} (not in the model's tag set)",
            "precision": 0.0,
            "recall": 0.0,
            "f1": 0.0,
            "support": count,
        }
        for tag, count in sorted(report.unknown_tags.items())
    ]
    return rows


def markdown_table(rows: list[dict]) -> str:
    lines = ["| tag | precision | recall | F1 | support |", "| --- | ---: | ---: | ---: | ---: |"]
    lines += [
        f"| {r['tag']} | {100 * r['precision']:.2f} | {100 * r['recall']:.2f} "
        f"| {100 * r['f1']:.2f} | {r['support']:,} |"
        for r in rows
    ]
    return "\n".join(lines)


def confusions_table(report: EvaluationReport) -> str:
    """The leading errors, with how many fell on capitalized and on unseen words."""
    lines = [
        "| gold | predicted | errors | capitalized words | unseen words |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {c.gold} | {c.predicted} | {c.count:,} | {c.capitalized:,} | {c.unseen:,} |"
        for c in report.confusions
    ]
    return "\n".join(lines)


def write_csv(rows: list[dict], path: Path) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def sweep_trials(version: ModelVersion | None, objective: Objective) -> list[plots.TrialCurves]:
    """Every trial of the sweep that produced the version, with its per-epoch curves on the
    objective it was chosen by (`objective`, its trainer's)."""
    if version is None or not version.run_id:
        return []
    client = mlflow.MlflowClient()
    run = client.get_run(version.run_id)
    parent = run.data.tags.get(MLFLOW_PARENT_RUN_ID)
    if parent is None:
        return []
    trials = []
    for child in read_trial_runs(child_runs(run.info.experiment_id, parent), objective):
        history = {
            key: [
                m.value
                for m in sorted(client.get_metric_history(child.run_id, key), key=lambda m: m.step)
            ]
            for key in (objective.metric, "grad_norm_first_lstm", "grad_norm_last_lstm")
        }
        if not history[objective.metric]:
            continue
        hidden, layers = child.value("model.hidden_size"), child.value("model.num_layers")
        baseline = child.role == BASELINE_ROLE
        trials.append(
            plots.TrialCurves(
                label=f"{'baseline ' if baseline else ''}h{hidden} x {layers} "
                f"layer{'' if layers == '1' else 's'}, {child.value('train.epochs')} ep",
                hidden_size=int(hidden),
                num_layers=int(layers),
                baseline=baseline,
                best_score=child.score,
                scores=history[objective.metric],
                grad_norm_first=history["grad_norm_first_lstm"],
                grad_norm_last=history["grad_norm_last_lstm"],
            )
        )
    return sorted(trials, key=lambda t: (t.baseline, t.hidden_size, t.num_layers, t.label))


def write_reports(
    report: EvaluationReport, trials: list[plots.TrialCurves], objective: Objective, folder: Path
) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rows = per_tag_rows(report)
    (folder / "per_tag.md").write_text(markdown_table(rows) + "\n")
    (folder / "confusions.md").write_text(confusions_table(report) + "\n")
    written = [
        write_csv(rows, folder / "per_tag.csv"),
        folder / "per_tag.md",
        folder / "confusions.md",
        plots.confusion_png(report.confusion, report.tag_names, folder / "confusion.png"),
    ]
    if trials:
        curves = folder / f"sweep_{objective.metric}.png"
        written.append(plots.curves_png(trials, objective, curves))
        written.append(plots.heatmap_png(trials, objective, folder / "sweep_heatmap.png"))
        baseline = [t for t in trials if t.baseline]
        healthy = [t for t in trials if not t.baseline and t.best_score is not None]
        # A healthy trial of several layers, so that its first and last layer differ.
        stacked = [t for t in healthy if t.num_layers > 1] or healthy
        if baseline and stacked:
            best = objective.best_of(stacked, lambda t: t.best_score)
            written.append(plots.grad_norms_png(baseline[0], best, folder / "sweep_grad_norms.png"))
    return written


def default_data(tagger: LoadedTagger) -> Path:
    data = tagger.config.data
    if data.test is None and data.format != "conllu":
        problem = "the model names no test file: pass --data PATH"
        raise DataFormatError(Path("--data"), None, problem)
    return split_file(data, "test")


def is_own_test(tagger: LoadedTagger, sha256: str) -> bool:
    """Whether the file whose digest is `sha256` holds the model's own test set (its
    config's test file, EWT test by default), byte for byte, wherever it lies: its figures
    are then the version's test figures; any other file's sit beside them."""
    try:
        own = default_data(tagger)
    except (DataFormatError, DataSourceError):
        return False
    return own.is_file() and sha256_of(own) == sha256


@dataclass(frozen=True)
class Evaluated:
    report: EvaluationReport
    version: ModelVersion | None
    data: Path
    run_id: str
    # Asked for with `timing`: tagging the file, one thread, median of passes
    # (postag.evaluation.cost).
    tagging_ms_per_sentence: float | None = None
    # An ensemble's (postag/models/ensemble.py): how many taggers it averages, and with `timing`,
    # one of them timed alike.
    members: int = 1
    member_tagging_ms_per_sentence: float | None = None


def evaluate_model(
    uri: str,
    data: Path | None,
    fmt: str | None,
    tag_column: str | None,
    reports: Path | None,
    timing: bool = False,
) -> Evaluated:
    """Evaluate the model at `uri` on a test file and log it as an MLflow evaluation run.

    `data`, `fmt` and `tag_column` default to the model's own; `reports`, where given, gets
    the tables and pictures, which the run then holds too; `timing` also times the tagging,
    as a Pareto search's trial timed it on the dev set.
    """
    tagger, version = load_tagger(uri)
    named = data is not None
    data = data or default_data(tagger)
    fmt = fmt or tagger.config.data.format
    sentences = read_sentences(data, fmt, tag_column or tagger.config.data.tag_column)
    report = evaluate_tagger(tagger, sentences)
    objective = tagger.config.train.objective
    trials = sweep_trials(version, objective) if reports else []
    files = write_reports(report, trials, objective, reports) if reports else []
    headline = report.headline()
    members = members_of(tagger)
    timed = member_timed = None
    if timing:
        words = [list(s.words) for s in sentences]
        timed = headline[TAGGING_TIME] = tagger_ms_per_sentence(tagger, words)
        if len(members) > 1:
            member_timed = tagger_ms_per_sentence(members[0], words)
            headline[MEMBER_TAGGING_TIME] = member_timed
    test = DataInput.test_file(data, report.num_sentences, report.num_tokens)
    own_test = not named or is_own_test(tagger, test.sha256)
    run_id = log_evaluation(uri, version, test, headline, files, own_test=own_test)
    return Evaluated(report, version, data, run_id, timed, len(members), member_timed)
