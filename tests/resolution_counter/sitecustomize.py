"""Counts each resolution of a trial's RunConfig, in every process that makes one.

On PYTHONPATH (tests/conftest.py's tiny sweep puts it there), Python runs this at start in
the sweep's driver and in each Ray worker it starts. Once `pipelines.sweep.trial.trainable` is
imported, `TrialConfigs.resolve` is wrapped to append a line (process id, the point) to the
file $POSTAG_TEST_RESOLUTIONS; the test reads the lines of both processes there.
"""

import importlib.abc
import importlib.util
import json
import os
import sys

TARGET = "pipelines.sweep.trial.trainable"


def counting(resolve):
    """`resolve`, appending a line to $POSTAG_TEST_RESOLUTIONS at each call."""

    def counted(self, point, device):
        line = json.dumps({"pid": os.getpid(), "point": point}, sort_keys=True, default=str)
        with open(os.environ["POSTAG_TEST_RESOLUTIONS"], "a") as log:
            log.write(line + "\n")
        return resolve(self, point, device)

    return counted


def count_resolutions(module) -> None:
    module.TrialConfigs.resolve = counting(module.TrialConfigs.resolve)


class CountOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != TARGET:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            count_resolutions(module)

        spec.loader.exec_module = exec_module
        return spec


if os.environ.get("POSTAG_TEST_RESOLUTIONS"):
    if TARGET in sys.modules:
        count_resolutions(sys.modules[TARGET])
    else:
        sys.meta_path.insert(0, CountOnImport())
