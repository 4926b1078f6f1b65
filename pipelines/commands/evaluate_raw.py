"""`postag evaluate --raw`: a tagger scored from a gold file's raw text, as CoNLL 2018 did.

The gold file's `# text =` lines are tagged as raw text (split into sentences, tokens and
words by `postag.data.tokenize`), and the output is scored against the gold file by UD's own
CoNLL 2018 scorer (`postag.evaluation.raw`): sentence, token and word F1, and the tag F1
over the words aligned by character offsets. The figures go to an MLflow evaluation run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlflow.entities.model_registry import ModelVersion

from pipelines.tracking import DataInput, log_evaluation
from postag.data.dataset import split_file
from postag.data.tagsets import UposFromXpos
from postag.evaluation.raw import RawScores, gold_paragraphs, score_raw
from postag.models.checkpoint import LoadedTagger
from postag.serving.inference import sentences_to_conllu, tag_text

RAW_REPORTS = "raw"  # reports/raw/: the tagged text and its tokenization errors
EWT_TEST_NAME = "en_ewt-ud-test.conllu"
# Published EWT test XPOS F1 from raw text (CoNLL 2018 scoring): the figures to beat.
RAW_TEXT_ANCHORS = {
    "UDPipe 1.2": 0.928,
    "Stanza 1.0, pretrained vectors": 0.9512,
    "Stanza 1.5, pretrained char LM": 0.9575,
}
# How many of the most frequent tokenization errors the console lists (the report has all).
TOP_TOKENIZATION_ERRORS = 10
LEVEL_NAMES = {
    "sentences": "sentences",
    "tokens": "tokens",
    "words": "words",
    "xpos": "XPOS",
    "upos": "UPOS",
}


def raw_text_report(
    uri: str, version: ModelVersion | None, data: Path, scores: RawScores, tag_column: str
) -> str:
    where = f" (version {version.version}, run {version.run_id})" if version else ""
    lines = [
        f"model  {uri}{where}",
        f"data   {data}: its raw text ('# text =' lines), {scores.gold_sentences:,} sentences "
        f"and {scores.gold_words:,} words in gold; scored as CoNLL 2018 (udtools.udeval)",
        "",
        "                 F1   precision   recall",
    ]
    for level, f1 in scores.f1.items():
        lines.append(
            f"  {LEVEL_NAMES[level]:<10} {100 * f1:6.2f}%    {100 * scores.precision[level]:6.2f}%"
            f"  {100 * scores.recall[level]:6.2f}%"
        )
    for other in ("upos", "xpos"):
        if other not in scores.f1:
            lines.append(f"  {LEVEL_NAMES[other]:<10} not tagged: this model tags {tag_column}")
    if tag_column == "xpos" and "upos" in scores.f1:
        lines.append("  (UPOS from the XPOS tags, as the training data pairs them with each word)")
    if data.name == EWT_TEST_NAME and tag_column == "xpos":
        lines.append("  published XPOS F1 from raw text on this file:")
        lines += [f"    {100 * f1:6.2f}%  {name}" for name, f1 in RAW_TEXT_ANCHORS.items()]
    if scores.tokenization_errors:
        lines.append("  most frequent tokenization errors, gold -> ours (all: tokenization.md):")
        lines += [
            f"    {error.count:>4}  {error.gold!r} -> {error.system!r}"
            for error in scores.tokenization_errors[:TOP_TOKENIZATION_ERRORS]
        ]
    return "\n".join(lines)


def tokenization_table(scores: RawScores) -> str:
    lines = ["| gold tokens | our tokens | count |", "| --- | --- | ---: |"]
    lines += [
        f"| `{error.gold}` | `{error.system}` | {error.count:,} |"
        for error in scores.tokenization_errors
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class RawEvaluated:
    scores: RawScores
    version: ModelVersion | None
    data: Path
    tag_column: str
    run_id: str


def training_file(tagger: LoadedTagger) -> Path | None:
    """The CoNLL-U file the tagger was trained on, which pairs XPOS with UPOS; None for the
    seed format, which holds one tag column."""
    if tagger.config.data.format != "conllu":
        return None
    return split_file(tagger.config.data, "train")


def evaluate_raw_text(
    uri: str, tagger: LoadedTagger, version: ModelVersion | None, data: Path, reports: Path | None
) -> RawEvaluated:
    """Evaluate the tagger loaded from `uri` on a gold file's raw text, and log it as an
    MLflow evaluation run; `reports`, where given, gets the tagged text and the tokenization
    errors."""
    column = tagger.config.data.tag_column
    sentences, tags = tag_text(tagger, gold_paragraphs(data))
    columns = {column: tags}
    if column == "xpos" and (train := training_file(tagger)) is not None:
        upos = UposFromXpos.learn(train)
        columns["upos"] = [upos.tag(s.words, t) for s, t in zip(sentences, tags, strict=True)]
    tagged = sentences_to_conllu(sentences, columns, data.name)
    scores = score_raw(data, tagged, tuple(columns))
    files = []
    if reports:
        folder = reports / RAW_REPORTS
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "tagged.conllu").write_text(tagged, encoding="utf-8")
        (folder / "tokenization.md").write_text(tokenization_table(scores) + "\n")
        files = [folder / "tagged.conllu", folder / "tokenization.md"]
    test = DataInput.test_file(data, scores.gold_sentences, scores.gold_words)
    run_id = log_evaluation(uri, version, test, scores.headline(), files, raw_text=True)
    return RawEvaluated(scores, version, data, column, run_id)
