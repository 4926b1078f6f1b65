"""`make bench-tracking`: simulated trials through the sweep's driver into `mlflow server` on
PostgreSQL, and the table it prints."""

import json

from pipelines.bench.sweeps.simulated import TrackingFigures
from pipelines.bench.sweeps.tracking import format_table
from pipelines.bench.sweeps.tracking import main as tracking_bench
from tests.helpers import require_postgres


def test_tracking_bench_counts_every_simulated_epoch_once_in_postgres(ewt_slice, tmp_path, capsys):
    require_postgres()
    output = tmp_path / "bench_tracking.json"
    data = [f"data.{split}={ewt_slice[split]}" for split in ("train", "dev")]
    options = [*data, f"data.cache_dir={tmp_path / 'cache'}"]
    # One size: the table's rows from 100 to 1,000 are the next test's.
    arguments = ["--trials", "5", "--epochs", "2", "--output", str(output)]
    code = tracking_bench([*arguments, *(f for o in options for f in ("--set", o))])
    assert code == 0, capsys.readouterr().out
    runs = json.loads(output.read_text())["runs"]
    assert [(r["trials"], r["epochs"]) for r in runs] == [(5, 2)]
    for run in runs:
        # Read back from the server: every trial's run closed, each epoch there once.
        assert run["runs_finished"] == run["trials"]
        assert run["epochs_missing"] == run["epochs_repeated"] == 0
        assert run["seconds"] > 0 and run["driver_peak_megabytes"] > 0
        assert 0 < run["epoch_logging_seconds"] < run["seconds"]
    printed = capsys.readouterr().out
    assert "| trials | epochs logged | epochs/s | trials/min |" in printed
    assert "this driver keeps up with about" in printed


def test_the_tracking_table_says_what_was_lost():
    def figures(trials: int, **loss) -> TrackingFigures:
        counts = {"runs_finished": trials, "epochs_missing": 0, "epochs_repeated": 0, **loss}
        return TrackingFigures(trials, 20, 10.0, 600.0, 40.0, 1.0, 5.0, 0.5, **counts)

    table = format_table([figures(10), figures(100, runs_finished=99, epochs_missing=3)])
    rows = [line for line in table.splitlines() if line.startswith("| 10")]
    assert rows[0].endswith("| yes |")
    assert rows[1].endswith("| NO: 1 runs unfinished, 3 epochs missing, 0 repeated |")
    # 10 trials x 20 epochs in 10 s, then 100 x 20 in 10 s.
    assert "epochs/s x10.00" in table
    assert "keeps up with about 12,000 trials at once" in table


def test_a_bad_value_is_one_line_before_any_server_starts(tmp_path, capsys):
    code = tracking_bench(["--set", "train.epochs=0", "--output", str(tmp_path / "b.json")])
    assert code == 2
    error = capsys.readouterr().err
    assert "the simulated sweep, with --set ['train.epochs=0']" in error
    assert "'train.epochs' must be at least 1, got 0" in error
    assert "Traceback" not in error and ".yaml" not in error  # the bench's own file
