"""`make evaluate BEST` / `postag evaluate`: a registered tagger on a whole test file.

    make evaluate BEST                            # models:/postag-tagger@best on EWT test
    make evaluate BEST EXPERIMENT=experiments/mine.yaml   # best of the model it registers
    make evaluate MODEL=models:/postag-tagger/3 DATA=my-test.conllu
    make evaluate MODEL=models:/postag-tagger/7 TIMING=1   # also ms per sentence, 1 thread
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
import json
import sys
from pathlib import Path

import mlflow
from mlflow.entities.model_registry import ModelVersion

from pipelines.cli import add_model_arguments, chosen_model, command_parser, not_found_message
from pipelines.commands.evaluate_raw import RAW_REPORTS, evaluate_raw_text, raw_text_report
from pipelines.evaluation import (
    Evaluated,
    default_data,
    evaluate_model,
    markdown_table,
    per_tag_rows,
)
from pipelines.names import MEMBER_TAGGING_TIME, MEMBERS_TAG
from pipelines.tracking import run_url, tracking_uri
from postag.config import ConfigError
from postag.data.readers import DataFormatError
from postag.data.sources import DataSourceError
from postag.evaluation.cost import TIMED_PASSES
from postag.evaluation.scoring import EvaluationReport
from postag.serving.registry import ModelNotFound, load_tagger
from postag.training.objective import TAGGING_TIME

SEED_TEST_ACCURACY = 0.9261  # the notebook's figure, on its author's own data
REPORTS_DIR = Path("reports")


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


def cost_lines(done: Evaluated) -> list[str]:
    """An ensemble's members, and the tagging time: measured here where asked, else an
    ensemble's as its sweep measured it beside one member's (its version's tags)."""
    lines = []
    tags = done.version.tags if done.version is not None else {}
    if done.members > 1:
        runs = tags.get(MEMBERS_TAG)
        lines.append(
            f"ensemble            {done.members} taggers, the mean of their tag probabilities"
            + (f" (runs {runs.replace(',', ', ')})" if runs else "")
        )
    timed, member = done.tagging_ms_per_sentence, done.member_tagging_ms_per_sentence
    how = f"one CPU thread, the median of {TIMED_PASSES} passes"
    if timed is None and done.members > 1 and MEMBER_TAGGING_TIME in tags:
        timed, member = float(tags[TAGGING_TIME]), float(tags[MEMBER_TAGGING_TIME])
        how = f"as its sweep measured it on the validation data, {how}; TIMING=1 measures here"
    if timed is not None:
        against = f", one member {member:.3f} ({timed / member:.1f}x)" if member else ""
        lines.append(f"tagging time        {timed:.3f} ms per sentence{against} ({how})")
    return lines


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
        done = evaluate_model(
            args.model, data, args.format, args.tag_column, args.reports, args.timing
        )
        print(terminal_report(args.model, done.version, done.data, done.report))
        for line in cost_lines(done):
            print(f"  {line}")
        print()
        print(markdown_table(per_tag_rows(done.report)))
        result = {**done.report.headline(), "data": str(done.data), "mlflow_run_id": done.run_id}
        if done.tagging_ms_per_sentence is not None:
            result[TAGGING_TIME] = done.tagging_ms_per_sentence
        if done.member_tagging_ms_per_sentence is not None:
            result[MEMBER_TAGGING_TIME] = done.member_tagging_ms_per_sentence
        reports = args.reports
    result["model"] = args.model
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    run_id = result["mlflow_run_id"]
    experiment = mlflow.MlflowClient().get_run(run_id).info.experiment_id
    link = run_url(mlflow.get_tracking_uri(), experiment, run_id)
    print(f"\nreports in {reports}/; MLflow evaluation run {run_id}: {link}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("postag evaluate", __doc__)
    add_model_arguments(parser, "MLflow model URI, or a postag train best.pt")
    parser.add_argument("--data", help="test file (default: the model's, else EWT test)")
    parser.add_argument("--format", choices=["conllu", "seed-ids"])
    parser.add_argument("--tag-column", choices=["xpos", "upos"])
    parser.add_argument("--json", help="also write the headline figures here")
    parser.add_argument("--reports", type=Path, default=REPORTS_DIR)
    parser.add_argument(
        "--timing",
        action="store_true",
        help="also time the tagging (ms per sentence, one thread), as a Pareto search does",
    )
    parser.add_argument(
        "--raw",
        action="store_true",
        help="tag the test file's raw text ('# text =' lines) and score as CoNLL 2018",
    )
    args = parser.parse_args(argv)
    if args.raw and (args.format == "seed-ids" or args.tag_column):
        parser.error("--raw reads a CoNLL-U file's text and scores the model's own tag column")
    if args.raw and args.timing:
        parser.error("--timing times the tagging of gold words, which --raw does not tag")
    try:
        args.model = chosen_model(args.model, args.experiment)
        run(args)
    except ModelNotFound as error:
        print(f"postag evaluate: error: {not_found_message(error)}", file=sys.stderr)
        return 2
    except (DataFormatError, DataSourceError, ConfigError) as error:
        print(f"postag evaluate: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
