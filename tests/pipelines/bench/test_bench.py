import json
import os

import pytest

from pipelines.bench.serving.load import main as serve_bench
from pipelines.bench.sweeps.scale import main as scale_bench
from pipelines.bench.sweeps.timing import main as sweep_bench
from pipelines.bench.training.chars import main as chars_bench
from pipelines.bench.training.memory import main as memory_bench
from pipelines.bench.training.profile import main as profile_bench
from pipelines.bench.training.race import main
from pipelines.bench.training.text import main as text_bench
from tests.helpers import conllu_blocks, free_port, write_experiment


def test_bench_races_both_ways_and_prints_the_table(ewt_slice, ewt_source, tmp_path, capsys):
    output = tmp_path / "bench.json"
    # The notebook scores full batches of 256 only: a dev set of more than one.
    dev = tmp_path / "dev.conllu"
    dev.write_text(conllu_blocks(ewt_source.dev, 300), encoding="utf-8")
    code = main(
        [
            "--target",
            "0.3",
            "--max-epochs",
            "3",
            "--output",
            str(output),
            "--set",
            f"data.train={ewt_slice['train']}",
            "--set",
            f"data.dev={dev}",
            "--set",
            f"data.cache_dir={tmp_path}",
            "--set",
            "model.hidden_size=16",
            "--set",
            "model.num_layers=1",
            "--set",
            "train.batch_size=32",
            "--set",
            "train.lr=0.005",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert (
        "| seed's way |" in printed
        and "| postag |" in printed
        and "ratio (postag / seed)" in printed
    )
    seed, ours = json.loads(output.read_text())["races"]
    assert (seed["name"], ours["name"]) == ("seed's way", "postag")
    assert seed["tokens_per_second"] > 0 and ours["tokens_per_second"] > 0
    # --set train.* tunes postag's side; the seed's side trains as the notebook did.
    assert (seed["batch_size"], seed["lr"]) == (256, 0.001)
    assert (ours["batch_size"], ours["lr"]) == (32, 0.005)
    assert "| seed's way | 256, 0.001 |" in printed and "| postag | 32, 0.005 |" in printed
    # 600 sentences are 2 of the notebook's batches an epoch: it stays far from the target.
    assert seed["epochs"] == 3 and seed["seconds_to_target"] is None
    assert ours["best_val_accuracy"] > 0.3


def test_a_dev_set_smaller_than_the_notebooks_batch_is_one_line(ewt_slice, tmp_path, capsys):
    arguments = [f"data.train={ewt_slice['train']}", f"data.dev={ewt_slice['dev']}"]
    arguments += [f"data.cache_dir={tmp_path}", "model.hidden_size=8", "model.num_layers=1"]
    code = main([part for setting in arguments for part in ("--set", setting)])
    assert code == 2
    assert capsys.readouterr().err == (
        f"postag bench: error: {ewt_slice['dev']}: 150 sentences, fewer than the notebook's "
        "batch of 256; the seed's way trains and scores full batches only\n"
    )


def test_sweep_bench_splits_where_the_time_of_packed_and_one_at_a_time_runs_went(
    ewt_slice, tmp_path, capsys, monkeypatch
):
    values = {
        "model": {"embedding_dim": 16, "num_layers": 1, "ff_dims": [16]},
        "train": {"epochs": 1, "batch_size": 32},
        "sweep": {
            "name": "bench",
            "space": {"model.hidden_size": [8, 16]},
            "baseline": {"model.hidden_size": 4, "model.num_layers": 3},
            "max_concurrent_trials": 2,
            "cpus_per_trial": 1,
        },
    }
    config = write_experiment(tmp_path, ewt_slice, values)
    monkeypatch.setenv("RAY_ADDRESS", "local")
    user_store = tmp_path / "user.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{user_store}")
    output = tmp_path / "bench_sweep.json"
    assert sweep_bench(["--config", str(config), "--output", str(output)]) == 0

    runs = json.loads(output.read_text())["runs"]
    assert [(r["name"], r["max_concurrent_trials"], r["trials"]) for r in runs] == [
        ("packed", 2, 3),
        ("one at a time", 1, 3),
    ]
    for run in runs:
        split = run["split"]
        assert split["slots"] == run["max_concurrent_trials"]
        # Every trial trained, started, reported and logged its model: each part took time.
        for part in ("training", "trial_start_up", "reporting", "model_logging", "sweep_end"):
            assert split[part] > 0, (run["name"], part)
        # The parts are measured apart; what is left of wall time x slots is idle, and
        # nothing was counted twice.
        assert split["idle"] >= 0, run["name"]
        assert split["epoch_logging"] <= split["reporting"]
    printed = capsys.readouterr().out
    assert "| trials training and validating |" in printed and "| idle slots |" in printed
    assert "Wall time ratio (one at a time / packed)" in printed
    # The bench ran in throwaway stores: the user's tracking store was never touched.
    assert not user_store.exists()
    assert os.environ["MLFLOW_TRACKING_URI"] == f"sqlite:///{user_store}"


def test_chars_bench_encodes_fewer_rows_once_per_spelling(ewt_slice, tmp_path, capsys):
    output = tmp_path / "bench_chars.json"
    code = chars_bench(
        [
            "--batches",
            "3",
            "--output",
            str(output),
            "--set",
            f"data.train={ewt_slice['train']}",
            "--set",
            f"data.dev={ewt_slice['dev']}",
            "--set",
            f"data.cache_dir={tmp_path}",
            "--set",
            "train.batch_size=32",
            "--set",
            "model.char_filters=8",
        ]
    )
    assert code == 0
    assert "ratio (positions / spellings)" in capsys.readouterr().out
    figures = json.loads(output.read_text())
    assert figures["batches"] == 3
    # Every real token is one padded position; repeats and padding are what spellings save.
    assert figures["positions"] > figures["tokens"] > figures["spellings"] > 0
    assert figures["per_position_seconds"] > 0 and figures["per_spelling_seconds"] > 0


def test_scale_bench_runs_the_same_trials_on_one_and_two_nodes(ewt_slice, tmp_path, capsys):
    values = {
        "model": {"embedding_dim": 8, "hidden_size": 8, "num_layers": 1, "ff_dims": [8]},
        "train": {"epochs": 1, "batch_size": 32, "max_batches_per_epoch": 5},
        "sweep": {
            "name": "scale",
            "space": {"model.hidden_size": [8, 16]},
            "baseline": {"model.hidden_size": 4, "model.num_layers": 2},
            "max_concurrent_trials": 3,
            "gpus_per_trial": 0,
        },
    }
    config = write_experiment(tmp_path, ewt_slice, values)
    output = tmp_path / "bench_scale.json"
    # Two of the three layouts: one node is the reference the speed-up is against; two nodes
    # is the layout a single machine's sweep never meets. One node with 2 CPUs differs from
    # the first only in its CPU count.
    layouts = ["--layout", "1cpu", "--layout", "2nodes"]
    assert scale_bench(["--config", str(config), "--output", str(output), *layouts]) == 0
    runs = json.loads(output.read_text())["runs"]
    # Every trial finished on every layout, and the two-node layout used both nodes.
    assert [(r["name"], r["trials"], r["nodes_used"]) for r in runs] == [
        ("one node, 1 CPU", 3, 1),
        ("two nodes, 1 CPU each", 3, 2),
    ]
    assert "| two nodes, 1 CPU each | 2 |" in capsys.readouterr().out


def test_scale_bench_refuses_a_layout_it_does_not_have(capsys):
    with pytest.raises(SystemExit) as stopped:
        scale_bench(["--layout", "3nodes"])
    assert stopped.value.code == 2
    assert "invalid choice: '3nodes'" in capsys.readouterr().err


def test_memory_bench_traces_each_case_in_a_process_of_its_own(ewt_slice, tmp_path, capsys):
    output = tmp_path / "bench_memory.json"
    data = [f"data.{split}={ewt_slice[split]}" for split in ("train", "dev", "test")]
    shrink = [
        *data,
        f"data.cache_dir={tmp_path}",
        "data.max_train_sentences=null",
        "model.hidden_size=16",
        "model.num_layers=2",
        "model.char_filters=8",
        "train.epochs=3",
    ]
    assert memory_bench(["--output", str(output), *(f"--set={o}" for o in shrink)]) == 0
    traces = {t["case"]: t for t in json.loads(output.read_text())["traces"]}
    assert set(traces) == {"best", "baseline"}
    for trace in traces.values():
        resident = trace["resident_megabytes"]
        assert len(resident) == 3 and all(100 < mb < 10_000 for mb in resident)
        assert trace["peak_megabytes"][-1] >= max(resident)
    printed = capsys.readouterr().out
    assert "| growth, epoch 2 to last |" in printed and "| peak |" in printed


def test_text_bench_times_the_tokenizer_and_both_kinds_of_request(ewt_slice, tmp_path, capsys):
    output = tmp_path / "bench_text.json"
    data = [f"data.{split}={path}" for split, path in ewt_slice.items()]
    options = [*data, f"data.cache_dir={tmp_path}", "model.hidden_size=16"]
    code = text_bench(["--output", str(output), *(f for o in options for f in ("--set", o))])
    assert code == 0
    printed = capsys.readouterr().out
    result = json.loads(output.read_text())
    tokenizer = result["tokenizer"]
    # The slice's raw text, all of it, split into about as many sentences as it holds.
    assert tokenizer["words"] > 0.95 * sum(
        1 for line in ewt_slice["test"].read_text().splitlines() if line[:1].isdigit()
    )
    assert 100 < tokenizer["sentences"] < 200
    assert [row["sentences_per_request"] for row in result["requests"]] == [1, 32]
    for row in result["requests"]:
        # The console's table carries the figures the JSON holds, both kinds timed.
        assert row["text_ms"] > 0 and row["tokens_ms"] > 0
        assert f"| {row['sentences_per_request']} | {row['text_ms']:.1f} |" in printed
    assert f"{tokenizer['sentences_per_second']:,.0f} sentences/s" in printed
    assert "| sentences a request | text records, ms |" in printed


def test_serve_bench_drives_the_real_server_and_counts_no_errors(ewt_slice, tmp_path, capsys):
    output = tmp_path / "bench_serve.json"
    data = [f"data.{split}={path}" for split, path in ewt_slice.items()]
    options = [*data, f"data.cache_dir={tmp_path}", "model.hidden_size=16", "model.char_dim=0"]
    arguments = ["--output", str(output), "--port", str(free_port()), "--members", "1", "2"]
    arguments += ["--workers", "1", "--clients", "1", "3", "--requests", "30", "--seconds", "10"]
    code = serve_bench([*arguments, *(f for o in options for f in ("--set", o))])
    assert code == 0, capsys.readouterr().out
    result = json.loads(output.read_text())
    cells = result["cells"]
    # One tagger, then an ensemble of two, each served and driven alike.
    assert [(c["members"], c["sentences_per_request"], c["clients"]) for c in cells] == [
        (members, size, clients) for members in (1, 2) for size in (1, 32) for clients in (1, 3)
    ]
    for cell in cells:
        # All 30 requests asked for were answered, well within the 10 s bound.
        assert cell["errors"] == 0 and cell["requests"] == 30 and cell["seconds"] < 10
        sent = 30 * cell["sentences_per_request"]
        assert cell["sentences_per_second"] * cell["seconds"] == pytest.approx(sent)
        assert 0 < cell["p50_ms"] <= cell["p95_ms"] <= cell["p99_ms"]
    assert {members: set(sizes) for members, sizes in result["ceilings"].items()} == {
        "1": {"1", "32"},
        "2": {"1", "32"},
    }
    printed = capsys.readouterr().out
    assert "| members | workers | sentences a request | clients | requests/s |" in printed
    assert "an ensemble of 2, in process, 32 sentences at a time:" in printed
    assert "an ensemble of 2 against one tagger, sentences a second: in process " in printed


def test_profile_bench_splits_an_epoch_by_part_of_the_step(ewt_slice, tmp_path, capsys):
    output = tmp_path / "profile.json"
    data = [f"data.{split}={ewt_slice[split]}" for split in ("train", "dev")]
    settings = [*data, f"data.cache_dir={tmp_path}", "model.hidden_size=16", "train.batch_size=32"]
    code = profile_bench(
        ["--batches", "4", "--output", str(output), *[a for s in settings for a in ("--set", s)]]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "4 batches timed, 3 profiled" in printed and "| forward: LSTM |" in printed
    figures = json.loads(output.read_text())
    seconds = figures["seconds"]
    for part in ("batching", "optimizer", "loss", "forward: LSTM", "backward: LSTM"):
        assert seconds[part] > 0, part
    assert "forward: feed-forward" in seconds and "backward: feed-forward" in seconds
    # Every part of the wall time is accounted for, once.
    assert sum(seconds.values()) == pytest.approx(figures["wall"])
    assert figures["tokens"] > 0
