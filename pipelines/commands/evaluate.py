"""`make evaluate BEST` / `postag evaluate`: a registered tagger on a whole test file.

    make evaluate BEST                            # models:/postag-tagger@best on EWT test
    make evaluate MODEL=models:/postag-tagger/3 DATA=my-test.conllu
    .venv/bin/postag evaluate --model URI --data PATH [--format seed-ids] [--json out.json]
    .venv/bin/postag evaluate --raw               # from the test file's raw text, as CoNLL 2018

Prints the headline figures and the per-tag table, writes reports/ (tables, pictures, the
sweep that produced the model) and logs it all as an MLflow run linked to the model version.

`--raw` tags the gold file's `# text =` lines instead of its words, splitting them into
sentences, tokens and words itself, and scores sentence, token and word F1 and the tag F1
over the words aligned by character offsets, as the CoNLL 2018 shared task did.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from pipelines.cli import command_parser, not_found_message
from pipelines.commands import plots
from pipelines.commands.evaluate_raw import RAW_REPORTS, evaluate_raw_text, raw_text_report
from pipelines.runs import BASELINE_ROLE, read_trial_runs
from pipelines.tracking import (
    DataInput,
    child_runs,
    log_evaluation,
    tracking_uri,
)
from postag.checkpoint import LoadedTagger
from postag.dataset import split_file
from postag.evaluation import EvaluationReport, evaluate_tagger
from postag.readers import DataFormatError, read_sentences
from postag.registry import ModelNotFound, best_model_uri, load_tagger
from postag.sources import DataSourceError

SEED_TEST_ACCURACY = 0.9261  # the notebook's figure, on its author's own data
REPORTS_DIR = Path("reports")


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


def terminal_report(
    uri: str, version: ModelVersion | None, data: Path, report: EvaluationReport
) -> str:
    where = f" (version {version.version}, run {version.run_id})" if version else ""
    share = report.num_unseen / report.num_tokens
    lines = [
        f"model  {uri}{where}",
        f"data   {data}: {report.num_sentences:,} sentences, {report.num_tokens:,} tokens "
        "(every token of every sentence)",
        "",
        f"  token accuracy      {100 * report.token_accuracy:6.2f}%",
        f"  seen words          {100 * report.seen_accuracy:6.2f}%  "
        f"({report.num_tokens - report.num_unseen:,} tokens)",
        f"  unseen words        {100 * report.unseen_accuracy:6.2f}%  "
        f"({report.num_unseen:,} tokens, {100 * share:.1f}% of the data)",
        f"  sentence accuracy   {100 * report.sentence_accuracy:6.2f}%",
        f"  macro F1            {100 * report.macro_f1:6.2f}%",
        f"  seed notebook       {100 * SEED_TEST_ACCURACY:6.2f}%  test accuracy on its author's "
        "own data, not this file: not a like-for-like comparison",
    ]
    leading = ", ".join(f"{c.gold}->{c.predicted} {c.count}" for c in report.confusions[:3])
    if leading:
        lines.append(f"  most confused       {leading} (all: confusions.md)")
    if report.unknown_tags:
        listed = ", ".join(f"{t} ({n})" for t, n in sorted(report.unknown_tags.items()))
        lines.append(f"  tags the model never saw, counted as errors: {listed}")
    return "\n".join(lines)


def sweep_trials(version: ModelVersion | None) -> list[plots.TrialCurves]:
    """Every trial of the sweep that produced the version, with its per-epoch curves."""
    if version is None or not version.run_id:
        return []
    client = mlflow.MlflowClient()
    run = client.get_run(version.run_id)
    parent = run.data.tags.get(MLFLOW_PARENT_RUN_ID)
    if parent is None:
        return []
    trials = []
    for child in read_trial_runs(child_runs(run.info.experiment_id, parent)):
        history = {
            key: [
                m.value
                for m in sorted(client.get_metric_history(child.run_id, key), key=lambda m: m.step)
            ]
            for key in ("val_accuracy", "grad_norm_first_lstm", "grad_norm_last_lstm")
        }
        if not history["val_accuracy"]:
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
                best_val_accuracy=child.best_val_accuracy,
                val_accuracy=history["val_accuracy"],
                grad_norm_first=history["grad_norm_first_lstm"],
                grad_norm_last=history["grad_norm_last_lstm"],
            )
        )
    return sorted(trials, key=lambda t: (t.baseline, t.hidden_size, t.num_layers, t.label))


def write_reports(
    report: EvaluationReport, trials: list[plots.TrialCurves], folder: Path
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
        written.append(plots.val_accuracy_png(trials, folder / "sweep_val_accuracy.png"))
        written.append(plots.heatmap_png(trials, folder / "sweep_heatmap.png"))
        baseline = [t for t in trials if t.baseline]
        healthy = [t for t in trials if not t.baseline and t.best_val_accuracy is not None]
        # A healthy trial of several layers, so that its first and last layer differ.
        stacked = [t for t in healthy if t.num_layers > 1] or healthy
        if baseline and stacked:
            best = max(stacked, key=lambda t: t.best_val_accuracy)
            written.append(plots.grad_norms_png(baseline[0], best, folder / "sweep_grad_norms.png"))
    return written


def default_data(tagger: LoadedTagger) -> Path:
    data = tagger.config.data
    if data.test is None and data.format != "conllu":
        problem = "the model names no test file: pass --data PATH"
        raise DataFormatError(Path("--data"), None, problem)
    return split_file(data, "test")


@dataclass(frozen=True)
class Evaluated:
    report: EvaluationReport
    version: ModelVersion | None
    data: Path
    run_id: str


def evaluate_model(
    uri: str, data: Path | None, fmt: str | None, tag_column: str | None, reports: Path | None
) -> Evaluated:
    """Evaluate the model at `uri` on a test file and log it as an MLflow evaluation run.

    `data`, `fmt` and `tag_column` default to the model's own; `reports`, where given, gets
    the tables and pictures, which the run then holds too.
    """
    tagger, version = load_tagger(uri)
    data = data or default_data(tagger)
    fmt = fmt or tagger.config.data.format
    sentences = read_sentences(data, fmt, tag_column or tagger.config.data.tag_column)
    report = evaluate_tagger(tagger, sentences)
    files = write_reports(report, sweep_trials(version), reports) if reports else []
    test = DataInput.test_file(data, report.num_sentences, report.num_tokens)
    run_id = log_evaluation(uri, version, test, report.headline(), files)
    return Evaluated(report, version, data, run_id)


def run(args: argparse.Namespace) -> dict:
    mlflow.set_tracking_uri(tracking_uri(Path.cwd()))
    data = Path(args.data) if args.data else None
    if args.raw:
        tagger, version = load_tagger(args.model)
        data = data or default_data(tagger)
        raw = evaluate_raw_text(args.model, tagger, version, data, args.reports)
        print(raw_text_report(args.model, raw.version, raw.data, raw.scores, raw.tag_column))
        result = {**raw.scores.headline(), "data": str(raw.data), "mlflow_run_id": raw.run_id}
        reports = args.reports / RAW_REPORTS
    else:
        done = evaluate_model(args.model, data, args.format, args.tag_column, args.reports)
        print(terminal_report(args.model, done.version, done.data, done.report))
        print()
        print(markdown_table(per_tag_rows(done.report)))
        result = {**done.report.headline(), "data": str(done.data), "mlflow_run_id": done.run_id}
        reports = args.reports
    result["model"] = args.model
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    print(f"\nreports in {reports}/; MLflow evaluation run {result['mlflow_run_id']}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("postag evaluate", __doc__)
    parser.add_argument(
        "--model", default=best_model_uri(), help="MLflow model URI, or a postag train best.pt"
    )
    parser.add_argument("--data", help="test file (default: the model's, else EWT test)")
    parser.add_argument("--format", choices=["conllu", "seed-ids"])
    parser.add_argument("--tag-column", choices=["xpos", "upos"])
    parser.add_argument("--json", help="also write the headline figures here")
    parser.add_argument("--reports", type=Path, default=REPORTS_DIR)
    parser.add_argument(
        "--raw",
        action="store_true",
        help="tag the test file's raw text ('# text =' lines) and score as CoNLL 2018",
    )
    args = parser.parse_args(argv)
    if args.raw and (args.format == "seed-ids" or args.tag_column):
        parser.error("--raw reads a CoNLL-U file's text and scores the model's own tag column")
    try:
        run(args)
    except ModelNotFound as error:
        print(f"postag evaluate: error: {not_found_message(error)}", file=sys.stderr)
        return 2
    except (DataFormatError, DataSourceError) as error:
        print(f"postag evaluate: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
