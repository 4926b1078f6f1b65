"""No usage statistics or telemetry leave the machine: not from any `make` target, nor from
the processes the tests start. `make sweep RAY_USAGE_STATS_ENABLED=1
MLFLOW_DISABLE_TELEMETRY=false` turns them back on."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import NO_TELEMETRY

# What Ray and MLflow themselves decide, in a process of their own.
VERDICTS = (
    "from ray._common.usage.usage_lib import usage_stats_enabled;"
    "from mlflow.telemetry.utils import is_telemetry_disabled;"
    "print(usage_stats_enabled(), not is_telemetry_disabled())"
)


def plain_environment(**extra: str) -> dict[str, str]:
    """This environment without the settings under test, nor what marks it as CI or a test
    run (MLflow keeps quiet there anyway, which would hide a missing setting)."""
    hidden = {*NO_TELEMETRY, "CI", "PYTEST_CURRENT_TEST", "PYTEST_VERSION", "DO_NOT_TRACK"}
    return {**{k: v for k, v in os.environ.items() if k not in hidden}, **extra}


def reports(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", VERDICTS], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.split()[-2:]


def test_ray_and_mlflow_report_nothing_with_the_settings_and_would_without():
    assert reports(plain_environment(**NO_TELEMETRY)) == ["False", "False"]
    # The settings are what turns them off: without them both would report.
    assert reports(plain_environment()) == ["True", "True"]


def test_every_make_target_runs_with_reporting_off():
    show = 'telemetry: ; @echo "$$RAY_USAGE_STATS_ENABLED $$MLFLOW_DISABLE_TELEMETRY"'
    done = subprocess.run(
        ["make", "--no-print-directory", "--eval", show, "telemetry"],
        env=plain_environment(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split() == ["0", "true"]
