import json

from pipelines.bench import main


def test_bench_races_both_ways_and_prints_the_table(ewt_slice, tmp_path, capsys):
    output = tmp_path / "bench.json"
    code = main(
        ["--target", "0.3", "--max-epochs", "3", "--output", str(output),
         "--set", f"data.train={ewt_slice['train']}", "--set", f"data.dev={ewt_slice['dev']}",
         "--set", f"data.cache_dir={tmp_path}", "--set", "model.hidden_size=16",
         "--set", "model.num_layers=1", "--set", "train.batch_size=32", "--set", "train.lr=0.005"]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert (
        "| seed's way |" in printed
        and "| postag |" in printed
        and "ratio (postag / seed)" in printed
    )
    races = json.loads(output.read_text())["races"]
    assert [r["name"] for r in races] == ["seed's way", "postag"]
    assert all(r["tokens_per_second"] > 0 and r["epochs"] >= 1 for r in races)
    assert all(r["best_val_accuracy"] > 0.3 for r in races)
