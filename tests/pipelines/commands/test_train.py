"""`postag train` end to end through its main(argv), as a user runs it."""

import json

import pytest

from pipelines.cli import main
from postag.data.readers import read_conllu
from postag.models.checkpoint import load_checkpoint

TINY = [
    "--set",
    "model.embedding_dim=16",
    "--set",
    "model.hidden_size=16",
    "--set",
    "model.num_layers=1",
    "--set",
    "model.ff_dims=[16]",
    "--set",
    "train.batch_size=32",
    "--set",
    "train.device=cpu",
]


def test_train_writes_checkpoint_and_summary(
    ewt_slice, tmp_path, capsys, monkeypatch, sqlite_store
):
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--config",
            "experiments/seed.yaml",
            *TINY,
            "--set",
            "train.epochs=2",
            "--set",
            f"train.output_dir={out}",
            "--set",
            f"data.cache_dir={tmp_path}",
            "--train",
            str(ewt_slice["train"]),
            "--dev",
            str(ewt_slice["dev"]),
            "--test",
            str(ewt_slice["test"]),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "epoch   1/2" in printed and "epoch   2/2" in printed and "tok/s" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert [e["epoch"] for e in summary["epochs"]] == [1, 2]
    assert summary["best_val_accuracy"] == max(e["val_accuracy"] for e in summary["epochs"])
    assert summary["config"]["model"]["hidden_size"] == 16
    assert summary["test"]["num_tokens"] == sum(
        1
        for line in ewt_slice["test"].read_text().splitlines()
        if line and line.split("\t")[0].isdigit()
    )
    assert load_checkpoint(out / "best.pt").config.train.epochs == 2

    # The checkpoint tags and evaluates as a registered model would, no registry needed.
    tagged = tmp_path / "tagged.conllu"
    assert (
        main(
            [
                "tag",
                "--model",
                str(out / "best.pt"),
                "--input",
                str(ewt_slice["test"]),
                "--output",
                str(tagged),
            ]
        )
        == 0
    )
    assert len(read_conllu(tagged)) == len(read_conllu(ewt_slice["test"]))
    capsys.readouterr()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_store(tmp_path))
    report = ["--json", str(tmp_path / "eval.json"), "--reports", str(tmp_path / "r")]
    data = ["--data", str(ewt_slice["test"])]
    assert main(["evaluate", "--model", str(out / "best.pt"), *data, *report]) == 0
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert evaluated["token_accuracy"] == pytest.approx(summary["test"]["accuracy"])
    assert main(["tag", "--model", str(tmp_path / "nope.pt"), "--input", str(tagged)]) == 2
    assert "no checkpoint file" in capsys.readouterr().err


def test_train_takes_the_seed_format(tmp_path, capsys):
    (tmp_path / "train.txt").write_text("5 8 2 0\n3 4 3 0\n8 2\n4 3\n" * 4)
    (tmp_path / "dev.txt").write_text("5 8 2\n3 4 3\n")
    code = main(
        [
            "train",
            *TINY,
            "--format",
            "seed-ids",
            "--train",
            str(tmp_path / "train.txt"),
            "--dev",
            str(tmp_path / "dev.txt"),
            "--set",
            "train.epochs=1",
            "--set",
            f"train.output_dir={tmp_path / 'run'}",
            "--set",
            f"data.cache_dir={tmp_path}",
        ]
    )
    assert code == 0
    assert "3 classes" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "model.hiden_size=3"], "unknown key 'model.hiden_size'"),
        (["--set", "train.epochs=many"], "'train.epochs' must be int, got 'many'"),
        (["--config", "missing.yaml"], "missing.yaml: no such config file"),
    ],
)
def test_bad_config_is_a_clear_error(args, message, capsys):
    assert main(["train", *args]) == 2
    assert message in capsys.readouterr().err


def test_bad_data_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.conllu"
    bad.write_text("1\tword\tNN\n")
    code = main(
        ["train", "--train", str(bad), "--dev", str(bad), "--set", f"data.cache_dir={tmp_path}"]
    )
    assert code == 2
    assert f"{bad}:1: expected 10 tab-separated columns, found 3" in capsys.readouterr().err


def test_unknown_top_level_section_is_an_error(tmp_path, capsys):
    config = tmp_path / "x.yaml"
    config.write_text("modle:\n  hidden_size: 3\n")
    assert main(["train", "--config", str(config)]) == 2
    assert "unknown key 'modle'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # A top-level key from --set is checked like one from the file, not dropped.
        (
            ["train", "--config", "experiments/seed.yaml", "--set", "epochs=3"],
            "--set epochs=3: unknown key 'epochs'",
        ),
        (["train", "--set", "train.epochs=0"], "'train.epochs' must be at least 1, got 0"),
        (["train", "--set", "train.lr=-1"], "'train.lr' must be above 0, got -1.0"),
        (
            [
                "sweep",
                "--config",
                "experiments/cpu.yaml",
                "--set",
                "sweep.space.data.max_train_sentences=[10, 20]",
            ],
            "data settings cannot vary between trials",
        ),
        (
            [
                "sweep",
                "--config",
                "experiments/cpu.yaml",
                "--set",
                "sweep.space.train.epochs=[0, 5]",
            ],
            "sweep.space.train.epochs: 'train.epochs' must be at least 1, got 0",
        ),
    ],
)
def test_bad_values_are_refused_before_any_work_naming_the_key(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


# Universal POS tags (UD's 17): what a tagger trained on the upos column may predict.
UPOS = {
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN",
    "PUNCT", "SCONJ", "SYM", "VERB", "X",
}  # fmt: skip


def test_tag_column_upos_trains_and_evaluates_on_universal_tags(
    ewt_slice, tmp_path, capsys, monkeypatch, sqlite_store
):
    """`--tag-column upos` reaches the data: the tagger learns UD's universal tags, not
    EWT's XPOS, and `postag evaluate --tag-column upos` scores it on that column."""
    out = tmp_path / "run"
    data = ["--train", str(ewt_slice["train"]), "--dev", str(ewt_slice["dev"])]
    settings = ["--set", "train.epochs=1", "--set", f"train.output_dir={out}"]
    settings += ["--set", f"data.cache_dir={tmp_path}"]
    assert main(["train", *TINY, *settings, *data, "--tag-column", "upos"]) == 0
    tagger = load_checkpoint(out / "best.pt")
    assert tagger.config.data.tag_column == "upos"
    learned = set(tagger.tags) - {tag for tag in tagger.tags if tag.startswith("<")}
    assert learned <= UPOS and len(learned) >= 12  # EWT's 600 sentences hold most of them
    summary = json.loads((out / "summary.json").read_text())
    capsys.readouterr()

    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_store(tmp_path))
    scored = tmp_path / "eval.json"
    report = ["--json", str(scored), "--reports", str(tmp_path / "r")]
    dev = ["--data", str(ewt_slice["dev"]), "--tag-column", "upos"]
    assert main(["evaluate", "--model", str(out / "best.pt"), *dev, *report]) == 0
    evaluated = json.loads(scored.read_text())
    assert evaluated["token_accuracy"] == pytest.approx(summary["best_val_accuracy"])
