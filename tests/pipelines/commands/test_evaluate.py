"""Evaluation from the registry, reports, errors and `postag tag`, on the tiny sweep's model."""

from __future__ import annotations

import json
from collections import Counter

import mlflow
import pandas as pd
import pytest
from matplotlib.image import imread

from pipelines.cli import main
from pipelines.tracking import EVALUATIONS_HEADING, run_url
from postag.data.readers import read_conllu
from postag.evaluation.scoring import evaluate_tagger
from postag.serving.inference import tag_sentences
from postag.serving.registry import best_model_uri, load_tagger
from tests.helpers import copy_store

PICTURES = ("confusion.png", "sweep_val_accuracy.png", "sweep_heatmap.png", "sweep_grad_norms.png")


@pytest.fixture(scope="module")
def evaluated(swept, ewt_slice, tmp_path_factory):
    """One evaluation of `best`, on a store of its own: other tests here evaluate too, and
    each evaluation moves the version's `evaluation_run_id` to itself."""
    outcome, runs, _, uri = swept
    folder = tmp_path_factory.mktemp("evaluate")
    store = copy_store(uri, folder / "store")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", store)
        code = main(
            [
                "evaluate",
                "--data",
                str(ewt_slice["test"]),
                "--json",
                str(folder / "out.json"),
                "--reports",
                str(folder / "reports"),
            ]
        )
    mlflow.set_tracking_uri(None)
    assert code == 0
    copy = (outcome, runs, mlflow.MlflowClient(store), store)
    return json.loads((folder / "out.json").read_text()), folder / "reports", copy


def test_accuracy_matches_an_independent_count(evaluated, in_copy_of_swept, ewt_slice):
    result, _, _ = evaluated
    sentences = read_conllu(ewt_slice["test"])
    model = mlflow.pyfunc.load_model(best_model_uri())
    predicted = model.predict(pd.DataFrame({"tokens": [list(s.words) for s in sentences]}))["tags"]
    right = total = 0
    for sentence, tags in zip(sentences, predicted, strict=True):
        for gold, guess in zip(sentence.tags, tags, strict=True):
            right += gold == guess
            total += 1
    assert result["num_tokens"] == total
    # Within 3 tokens: this load and the command's may break a near-tie apart by float
    # rounding on some CPUs (see the next test); any real difference is far larger.
    assert abs(result["token_accuracy"] * total - right) <= 3
    assert {"seen_accuracy", "unseen_accuracy", "sentence_accuracy", "macro_f1"} <= set(result)


def test_the_leading_confusions_match_an_independent_count(in_copy_of_swept, ewt_slice):
    # The registered tagger, loaded once: the report and the independent count come from one
    # model in memory. Two loads of a model this undertrained can break its near-ties between
    # two wrong tags apart by float rounding on some CPUs (a CI run saw 169 errors vs 172).
    sentences = read_conllu(ewt_slice["test"])
    tagger, _ = load_tagger(best_model_uri())
    predicted = tag_sentences(tagger, [list(s.words) for s in sentences])
    errors, capitalized = Counter(), Counter()
    for sentence, tags in zip(sentences, predicted, strict=True):
        for word, gold, guess in zip(sentence.words, sentence.tags, tags, strict=True):
            if gold != guess:
                errors[(gold, guess)] += 1
                capitalized[(gold, guess)] += word[0].isupper()
    confusions = evaluate_tagger(tagger, sentences).confusions
    assert 0 < len(confusions) <= 10
    assert [c.count for c in confusions] == [n for _, n in errors.most_common(len(confusions))]
    for confusion in confusions:
        pair = (confusion.gold, confusion.predicted)
        assert (confusion.count, confusion.capitalized) == (errors[pair], capitalized[pair])


def test_the_reports_confusions_table_lists_the_leading_errors_most_first(evaluated):
    _, reports, _ = evaluated
    rows = (reports / "confusions.md").read_text().splitlines()
    assert rows[0] == "| gold | predicted | errors | capitalized words | unseen words |"
    counts = [int(row.strip("|").split("|")[2].replace(",", "")) for row in rows[2:]]
    assert 0 < len(counts) <= 10 and counts == sorted(counts, reverse=True)


def test_reports_hold_tables_and_pictures(evaluated):
    _, reports, _ = evaluated
    table = (reports / "per_tag.md").read_text()
    assert table.startswith("| tag | precision | recall | F1 | support |")
    assert "| NN |" in table
    assert (reports / "per_tag.csv").read_text().startswith("tag,precision,recall,f1,support")
    for name in PICTURES:
        height, width, _ = imread(reports / name).shape
        assert height > 300 and width > 300, name


def test_evaluation_run_sits_with_the_model_version(evaluated, ewt_slice):
    result, _, (outcome, _, client, uri) = evaluated
    run = client.get_run(result["mlflow_run_id"])
    version = client.get_model_version("postag-tagger", outcome["version"])
    assert run.data.tags["registered_model_version"] == str(outcome["version"])
    # Nested under the trial that trained the version, not loose beside the sweeps.
    assert run.data.tags["mlflow.parentRunId"] == version.run_id
    assert run.data.metrics["token_accuracy"] == result["token_accuracy"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "reports")}
    assert "reports/confusion.png" in artifacts
    (test,) = run.inputs.dataset_inputs
    assert test.dataset.name == ewt_slice["test"].name
    assert {t.key: t.value for t in test.tags}["mlflow.data.context"] == "test"
    # The version's page links the latest evaluation and shows its figure.
    assert version.tags["evaluation_run_id"] == run.info.run_id
    # The tag holds six decimals, as the UI shows it.
    tagged = float(version.tags["test_token_accuracy"])
    assert tagged == pytest.approx(result["token_accuracy"], abs=5e-7)
    assert run_url(uri, run.info.experiment_id, run.info.run_id) in version.description
    assert version.description.count(EVALUATIONS_HEADING) == 1
    assert version.tags["test_data"] == ewt_slice["test"].name


def test_another_dataset_adds_its_figures_beside_the_test_sets(evaluated, ewt_slice):
    """GUM after EWT test: the version keeps EWT test's figure as its test figure, and
    records each dataset's latest evaluation beside it, in its tags and its description."""
    result, reports, (outcome, _, client, store) = evaluated
    other = reports.parent / "gum-like-test.conllu"
    other.write_text(ewt_slice["dev"].read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", store)
        out = reports.parent / "other.json"
        code = main(
            ["evaluate", "--data", str(other), "--json", str(out), "--reports", str(reports)]
        )
    mlflow.set_tracking_uri(None)
    assert code == 0
    on_other = json.loads(out.read_text())
    version = client.get_model_version("postag-tagger", outcome["version"])
    tags, own = version.tags, ewt_slice["test"].name
    # The test figure is still the test set's.
    assert tags["test_data"] == own and tags["evaluation_run_id"] == result["mlflow_run_id"]
    assert float(tags["test_token_accuracy"]) == pytest.approx(result["token_accuracy"], abs=5e-7)
    # Each dataset's latest, by name.
    for name, figures in ((own, result), (other.name, on_other)):
        tagged = float(tags[f"evaluation/{name}/test_token_accuracy"])
        assert tagged == pytest.approx(figures["token_accuracy"], abs=5e-7)
        assert tags[f"evaluation/{name}/evaluation_run_id"] == figures["mlflow_run_id"]
    listed = version.description.split(EVALUATIONS_HEADING)[1].strip().splitlines()
    assert [line.split(":")[0] for line in listed] == [f"- {own}", f"- {other.name}"]
    assert f"{100 * on_other['token_accuracy']:.2f}% token accuracy" in listed[1]


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("models:/postag-tagger/99", "'postag-tagger' has no version 99"),
        ("models:/postag-tagger@nope", "'postag-tagger' has no alias 'nope' yet"),
        ("models:/no-such-model@best", "no registered model 'no-such-model'"),
    ],
)
def test_missing_models_are_clear_errors(in_copy_of_swept, model, message, capsys):
    assert main(["evaluate", "--model", model]) == 2
    assert message in capsys.readouterr().err


def test_empty_store_says_to_run_the_sweep(tmp_path, monkeypatch, capsys, sqlite_store):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_store(tmp_path))
    assert main(["evaluate"]) == 2
    assert "run `make sweep` first" in capsys.readouterr().err


def test_tags_the_model_never_saw_count_as_errors_and_are_listed(
    in_copy_of_swept, tmp_path, capsys
):
    data = tmp_path / "odd.conllu"
    data.write_text("1\tThe\t_\t_\tDT\t_\t_\t_\t_\t_\n2\tthing\t_\t_\tNEWTAG\t_\t_\t_\t_\t_\n")
    assert (
        main(
            [
                "evaluate",
                "--data",
                str(data),
                "--json",
                str(tmp_path / "o.json"),
                "--reports",
                str(tmp_path / "r"),
            ]
        )
        == 0
    )
    result = json.loads((tmp_path / "o.json").read_text())
    assert result["unknown_tags"] == {"NEWTAG": 1}
    assert result["token_accuracy"] <= 0.5
    assert "tags the model never saw, counted as errors: NEWTAG (1)" in capsys.readouterr().out


def test_timing_measures_the_tagging_as_a_pareto_trial_does_and_logs_it(
    in_copy_of_swept, ewt_slice, tmp_path, capsys
):
    out = tmp_path / "o.json"
    args = ["evaluate", "--data", str(ewt_slice["dev"]), "--timing", "--json", str(out)]
    assert main([*args, "--reports", str(tmp_path / "r")]) == 0
    result = json.loads(out.read_text())
    assert result["tagging_ms_per_sentence"] > 0
    printed = capsys.readouterr().out
    assert f"tagging time        {result['tagging_ms_per_sentence']:.3f} ms per sentence" in printed
    run = mlflow.MlflowClient().get_run(result["mlflow_run_id"])
    assert run.data.metrics["tagging_ms_per_sentence"] == result["tagging_ms_per_sentence"]


def test_timing_raw_text_is_refused_not_ignored(in_copy_of_swept, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["evaluate", "--raw", "--timing"])
    assert stopped.value.code == 2
    assert "--timing times the tagging of gold words" in capsys.readouterr().err


def test_tag_rewrites_only_the_tag_column_of_conllu(in_copy_of_swept, ewt_slice, tmp_path):
    out = tmp_path / "tagged.conllu"
    assert main(["tag", "--input", str(ewt_slice["test"]), "--output", str(out)]) == 0
    before = ewt_slice["test"].read_text().splitlines()
    after = out.read_text().splitlines()
    assert len(after) == len(before)
    sentences = read_conllu(ewt_slice["test"])
    model = mlflow.pyfunc.load_model(best_model_uri())
    expected = model.predict(pd.DataFrame({"tokens": [list(s.words) for s in sentences]}))["tags"]
    assert [list(s.tags) for s in read_conllu(out)] == [list(tags) for tags in expected]
    for old, new in zip(before, after, strict=True):
        old_columns, new_columns = old.split("\t"), new.split("\t")
        if len(old_columns) == 10 and old_columns[0].isdigit():
            assert old_columns[:4] + old_columns[5:] == new_columns[:4] + new_columns[5:]
        else:
            assert old == new


def test_tag_reads_raw_text_and_splits_it_as_ewt_does(in_copy_of_swept, tmp_path):
    text = tmp_path / "raw.txt"
    text.write_text("I don't know, do you?\n\nWhere is it? Here.\n")
    out = tmp_path / "raw.conllu"
    assert main(["tag", "--input", str(text), "--output", str(out)]) == 0
    sentences = read_conllu(out)
    assert [s.words for s in sentences] == [
        ("I", "do", "n't", "know", ",", "do", "you", "?"),
        ("Where", "is", "it", "?"),
        ("Here", "."),
    ]
    written = out.read_text()
    assert "# text = I don't know, do you?\n" in written
    assert "\n2-3\tdon't\t" in written  # one token, two words
    assert "\n4\tknow\t_\t_\t" in written and "SpaceAfter=No" in written
    # Tagged as the served model tags the same words.
    model = mlflow.pyfunc.load_model(best_model_uri())
    expected = model.predict(pd.DataFrame({"tokens": [list(s.words) for s in sentences]}))
    assert [list(s.tags) for s in sentences] == [list(tags) for tags in expected["tags"]]


def test_tag_keeps_pre_split_input_behind_a_flag(in_copy_of_swept, tmp_path):
    text = tmp_path / "tokens.txt"
    text.write_text("I do n't like green-tea .\n\nWhere is it ?\n")
    out = tmp_path / "tokens.conllu"
    command = ["tag", "--input", str(text), "--input-format", "tokens", "--output", str(out)]
    assert main(command) == 0
    assert [s.words for s in read_conllu(out)] == [
        ("I", "do", "n't", "like", "green-tea", "."),
        ("Where", "is", "it", "?"),
    ]


def test_evaluate_raw_scores_the_text_lines_as_conll_2018_and_logs_the_run(
    in_copy_of_swept, ewt_slice, tmp_path, capsys
):
    outcome, _, client, _ = in_copy_of_swept
    version_before = client.get_model_version("postag-tagger", outcome["version"])
    out = tmp_path / "raw.json"
    data = ["--data", str(ewt_slice["test"])]
    assert main(["evaluate", "--raw", *data, "--json", str(out), "--reports", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    for level in ("sentences", "tokens", "words", "xpos", "upos"):
        assert 0 < result[f"raw_{level}_f1"] <= 1
        assert f"{100 * result[f'raw_{level}_f1']:6.2f}%" in printed
    assert result["raw_tokens_f1"] > 0.97
    # The model tags XPOS; UPOS comes from its tags, as its training data pairs them.
    assert "(UPOS from the XPOS tags" in printed
    assert "most frequent tokenization errors" in printed
    tagged = tmp_path / "raw" / "tagged.conllu"
    assert read_conllu(tagged)  # what was scored, readable
    assert (tmp_path / "raw" / "tokenization.md").read_text().startswith("| gold tokens |")
    run = client.get_run(result["mlflow_run_id"])
    assert run.data.tags["evaluation_input"] == "raw text"
    assert run.data.metrics["raw_xpos_f1"] == result["raw_xpos_f1"]
    assert run.data.tags["mlflow.parentRunId"] == version_before.run_id
    # The version keeps linking its gold-token evaluation, not this one.
    version = client.get_model_version("postag-tagger", outcome["version"])
    assert version.tags.get("evaluation_run_id") == version_before.tags.get("evaluation_run_id")


def test_evaluate_raw_without_text_lines_names_the_file(in_copy_of_swept, tmp_path, capsys):
    data = tmp_path / "bare.conllu"
    data.write_text("1\tHi\t_\tINTJ\tUH\t_\t0\troot\t_\t_\n\n")
    assert main(["evaluate", "--raw", "--data", str(data), "--reports", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "bare.conllu" in error and "no '# text =' lines" in error and "Traceback" not in error
