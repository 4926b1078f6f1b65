"""`postag tag`: tag raw text or a CoNLL-U file with a registered model; CoNLL-U out.

.venv/bin/postag tag --input sentences.txt            # one sentence per line, tokens by spaces
.venv/bin/postag tag --input file.conllu --output tagged.conllu --model models:/postag-tagger/2
"""

from __future__ import annotations

import sys
from pathlib import Path

import mlflow

from pipelines.cli import add_model_arguments, chosen_model, command_parser, not_found_message
from pipelines.tracking import tracking_uri
from postag.config import ConfigError
from postag.data.readers import DataFormatError
from postag.serving.inference import retag_conllu, text_to_conllu, tokens_to_conllu
from postag.serving.registry import ModelNotFound, load_tagger

CONVERTERS = {"text": text_to_conllu, "tokens": tokens_to_conllu, "conllu": retag_conllu}


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("postag tag", __doc__)
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument(
        "--input-format",
        choices=list(CONVERTERS),
        help="text: raw text; tokens: pre-split, one sentence a line, tokens by spaces; "
        "conllu: fill a CoNLL-U file's tag column (default: conllu for *.conllu, else text)",
    )
    parser.add_argument("--output", type=Path, help="default: standard output")
    add_model_arguments(parser, "MLflow model URI, or a postag train best.pt")
    parser.add_argument(
        "--tag-column", choices=["xpos", "upos"], help="column to fill (default: the model's)"
    )
    args = parser.parse_args(argv)
    fmt = args.input_format or ("conllu" if args.input.suffix == ".conllu" else "text")
    try:
        mlflow.set_tracking_uri(tracking_uri(Path.cwd()))
        tagger, _ = load_tagger(chosen_model(args.model, args.experiment))
        column = args.tag_column or tagger.config.data.tag_column
        tagged = CONVERTERS[fmt](args.input, tagger, column)
    except ModelNotFound as error:
        print(f"postag tag: error: {not_found_message(error)}", file=sys.stderr)
        return 2
    except (DataFormatError, ConfigError) as error:
        print(f"postag tag: error: {error}", file=sys.stderr)
        return 2
    if args.output:
        args.output.write_text(tagged, encoding="utf-8")
    else:
        sys.stdout.write(tagged)
    return 0


if __name__ == "__main__":
    sys.exit(main())
