"""`make bench`, raw text: how fast text splits into sentences, and what it costs a request.

Two figures, on EWT test's raw text (its `# text =` lines):
- the tokenizer and sentencizer alone (`postag.data.tokenize`), in sentences and words a second;
- the served model's own `predict` (what `mlflow models serve` calls per request) given the
  same sentences as `text` records and as pre-split `tokens` records, 1 and 32 sentences a
  request: median milliseconds a request, and the ratio, measured in this run.

The tagger has the configuration's architecture (default: experiments/best.yaml) with
untrained weights: its cost does not depend on what the weights hold. HTTP adds the same to
both kinds of request and is left out.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from pipelines.cli import command_parser
from pipelines.experiment import add_config_arguments, config_from_args
from postag.data import dataset as datasets
from postag.data.readers import read_conllu
from postag.data.tokenize import english_pipeline, sentences_of
from postag.evaluation.raw import TEXT_PREFIX, gold_paragraphs
from postag.models.checkpoint import LoadedTagger
from postag.models.tagger import Tagger
from postag.serving.pyfunc import TEXT_COLUMN, TOKENS_COLUMN, TaggerModel

BEST_EXPERIMENT = Path("experiments/best.yaml")
TOKENIZER_ROUNDS = 3
REQUEST_SIZES = (1, 32)
REQUESTS = 40  # of each size and kind


def untrained_tagger(config) -> LoadedTagger:
    """The configuration's tagger over the prepared EWT vocabularies, weights as initialised."""
    prepared = datasets.load(config.data)
    torch.manual_seed(config.train.seed)
    model = Tagger(config.model, len(prepared.words), prepared.num_classes, len(prepared.chars))
    return LoadedTagger(
        model.eval(),
        config,
        prepared.words.items,
        prepared.tags.items,
        prepared.fingerprint,
        prepared.chars.items if config.model.char_dim > 0 else (),
    )


def tokenizer_speed(paragraphs: list[str]) -> dict:
    """Sentences and words a second over every paragraph, the median of a few rounds.

    Each round starts from a new pipeline, built outside the timing: spaCy's tokenizer caches
    the chunks it has split, and a second pass over the same text would only read its cache.
    """
    seconds, sentences, words = [], 0, 0
    for _ in range(TOKENIZER_ROUNDS):
        english_pipeline.cache_clear()
        english_pipeline()
        started = time.perf_counter()
        found = [s for paragraph in paragraphs for s in sentences_of(paragraph)]
        seconds.append(time.perf_counter() - started)
        sentences, words = len(found), sum(len(s.words) for s in found)
    median = statistics.median(seconds)
    return {
        "sentences": sentences,
        "words": words,
        "seconds": median,
        "sentences_per_second": sentences / median,
        "words_per_second": words / median,
    }


def request_costs(model: TaggerModel, texts: list[str], words: list[list[str]]) -> list[dict]:
    """Median milliseconds a request, as text and as tokens, for each request size."""
    rows = []
    for size in REQUEST_SIZES:
        medians = {}
        for column, records in ((TEXT_COLUMN, texts), (TOKENS_COLUMN, words)):
            requests = [
                pd.DataFrame({column: records[start : start + size]})
                for start in range(0, size * REQUESTS, size)
            ]
            model.predict(None, requests[0])  # warm-up
            seconds = []
            for request in requests:
                started = time.perf_counter()
                model.predict(None, request)
                seconds.append(time.perf_counter() - started)
            medians[column] = 1000 * statistics.median(seconds)
        rows.append(
            {
                "sentences_per_request": size,
                "text_ms": medians[TEXT_COLUMN],
                "tokens_ms": medians[TOKENS_COLUMN],
                "ratio": medians[TEXT_COLUMN] / medians[TOKENS_COLUMN],
            }
        )
    return rows


def format_table(speed: dict, costs: list[dict]) -> str:
    lines = [
        f"tokenizer and sentencizer, EWT test's raw text: {speed['sentences_per_second']:,.0f} "
        f"sentences/s, {speed['words_per_second']:,.0f} words/s "
        f"({speed['sentences']:,} sentences in {speed['seconds']:.2f} s, median of "
        f"{TOKENIZER_ROUNDS})",
        "",
        "| sentences a request | text records, ms | tokens records, ms | text / tokens |",
        "| ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r['sentences_per_request']} | {r['text_ms']:.1f} | {r['tokens_ms']:.1f} "
        f"| {r['ratio']:.2f}x |"
        for r in costs
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("postag bench-text", __doc__)
    add_config_arguments(parser, default=BEST_EXPERIMENT)
    parser.add_argument("--output", type=Path, default=Path("runs/bench_text.json"))
    args = parser.parse_args(argv)
    config = config_from_args(args)
    test = datasets.split_file(config.data, "test")
    speed = tokenizer_speed(gold_paragraphs(test))
    texts = [
        line.removeprefix(TEXT_PREFIX)
        for line in test.read_text(encoding="utf-8").splitlines()
        if line.startswith(TEXT_PREFIX)
    ]
    words = [list(s.words) for s in read_conllu(test, config.data.tag_column)]
    model = TaggerModel()
    model.tagger = untrained_tagger(config)
    costs = request_costs(model, texts, words)
    table = format_table(speed, costs)
    print(table, flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"tokenizer": speed, "requests": costs, "table": table}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
