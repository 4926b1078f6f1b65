"""The CPU study exactly as `make sweep` runs it without a GPU: minutes, so `make test-slow`."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from pipelines.sweep.driver import run_sweep
from pipelines.sweep.setup.job import CPU_EXPERIMENT
from postag.serving.names import REGISTERED_MODEL
from postag.serving.registry import BEST_ALIAS
from tests.helpers import trial_runs

ROOT = Path(__file__).resolve().parents[2]
# The CPU study's winner on 3,000 training sentences (measured 80.60%, 2026-11-25); far above the
# majority tag (13%) and the 40-layer baseline.
WINNER_AT_LEAST = 0.78


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_cpu_study_registers_a_winner_and_records_why_the_deep_baseline_fails(
    tmp_path, monkeypatch
):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("RAY_ADDRESS", "local")
    monkeypatch.chdir(ROOT)  # the experiment's data section points at the shared EWT
    outcome = run_sweep(ROOT / CPU_EXPERIMENT, [], tmp_path / "tune", fresh=False)
    assert not outcome["interrupted"]

    client = mlflow.MlflowClient(uri)
    runs = trial_runs(client)
    assert len(runs) == 13 and {r.info.status for r in runs} == {"FINISHED"}
    (baseline,) = [r for r in runs if r.data.tags["role"] == "deep-baseline"]
    best = client.get_model_version_by_alias(REGISTERED_MODEL, BEST_ALIAS)
    winner = client.get_run(best.run_id)
    assert winner.data.metrics["best_val_accuracy"] >= WINNER_AT_LEAST
    assert baseline.data.metrics["best_val_accuracy"] < 0.2
    # The evidence: the 40-layer stack's first layer gets orders of magnitude less gradient.
    first, last = (
        baseline.data.metrics[k] for k in ("grad_norm_first_lstm", "grad_norm_last_lstm")
    )
    assert first < 1e-6 * last
