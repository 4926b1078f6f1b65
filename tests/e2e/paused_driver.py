"""A sweep driver that pauses at one part of its conclusion, so that a test can stop it
there however fast that part is on a CI-sized sweep:

    python -m tests.e2e.paused_driver PART [sweep arguments...]

It prints `paused PART` and waits for a signal, inside the real code of that part: the
registration has made its version but set no alias yet; the test evaluation's MLflow run
is open; the trial table is not yet written; or, `answered`, the sweep has finished and
printed its answer, and the process has not yet ended. Any other PART runs the driver as
it is.
"""

from __future__ import annotations

import functools
import importlib
import sys
import time

from pipelines.sweep import driver

PAUSED = "paused"
# Where each part pauses: (module, attribute path) of a function that part calls, and
# whether it pauses before that function runs or once it has.
PARTS = {
    "registering": ("pipelines.sweep.end.winner", "set_alias", "before"),
    "testing": ("pipelines.tracking", "mlflow.log_dict", "before"),
    "weighing": ("pipelines.sweep.end.conclusion", "parameter_importance", "before"),
    "writing": ("pipelines.sweep.lifecycle.parent_run", "ParentRun.close_with_summary", "before"),
    "answered": ("pipelines.sweep.end.conclusion", "say_end", "after"),
}


def pause_in(part: str) -> None:
    """Replace the function that `part` calls with one that stops the first time it runs."""
    module_name, path, when = PARTS[part]
    *owners, name = path.split(".")
    owner = importlib.import_module(module_name)
    for attribute in owners:
        owner = getattr(owner, attribute)
    original = getattr(owner, name)

    @functools.wraps(original)
    def paused(*args, **kwargs):
        if when == "after":
            original(*args, **kwargs)
        print(f"{PAUSED} {part}", flush=True)
        while True:  # until a signal raises KeyboardInterrupt here
            time.sleep(0.05)

    setattr(owner, name, paused)


if __name__ == "__main__":
    part, *arguments = sys.argv[1:]
    if part in PARTS:
        pause_in(part)
    sys.exit(driver.main(arguments))
