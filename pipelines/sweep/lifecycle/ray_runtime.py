"""The Ray runtime a sweep's stages run on: started once (or the cluster RAY_ADDRESS names
joined) by the first Tune stage, kept for the stages after it, and shut down when the
sweep's runs are closed, with the driver's stop signals its own throughout.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

import ray
import ray._private.services as ray_services
import ray._private.utils as ray_utils
import ray._private.worker as ray_worker

from pipelines.sweep.lifecycle.signals import take_stop_signals


@contextlib.contextmanager
def ray_processes_in_groups_of_their_own() -> Iterator[None]:
    """The local Ray runtime that ray.init starts, each process in a process group of its
    own, so that a stop signal sent to the driver's whole group (`timeout`, Slurm, systemd,
    a container stop) reaches the driver alone, and it stops Tune as Ctrl-C does.

    In the driver's group, Ray's processes died at once on such a SIGTERM; the driver then
    waited 60 s for them and left runs RUNNING. Ray does the same on Windows, where it starts
    them with CREATE_NEW_PROCESS_GROUP; on Linux they still end with the driver, through the
    kernel's parent-death signal (Ray's fate sharing). Ray 2.60 starts every one of them
    through `services.ConsolePopen`, replaced here for the call: no option of ray.init does
    it.
    """
    if not ray_utils.detect_fate_sharing_support():
        yield  # without fate sharing, Ray reaps its processes by their group: leave them
        return
    original = ray_services.ConsolePopen

    class InAGroupOfItsOwn(original):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "process_group": 0})

    ray_services.ConsolePopen = InAGroupOfItsOwn
    try:
        yield
    finally:
        ray_services.ConsolePopen = original


@contextlib.contextmanager
def one_ray_for_the_stages() -> Iterator[None]:
    """The Ray runtime that the first Tune stage inside starts (or the cluster it joins),
    kept for the stages after it and shut down when the block ends. When each stage started
    its own, a sweep with a confirmation started Ray twice: 5 CPU-s and 4.5 s each time."""
    try:
        yield
    finally:
        # A caller in this process (a test, a notebook) must not inherit our Ray instance.
        shutdown_ray()


class _SignalsTakenBack:
    """Ray's core worker, whose driver shutdown gives the stop signals back to the driver.

    That shutdown sets SIGTERM to the kernel's default, in C, behind Python's back (Ray
    2.60), and Ray then takes about a second to stop its processes: a SIGTERM in that
    second ended the driver on the spot (exit 143, no line). No option of Ray's avoids it."""

    def __init__(self, core_worker):
        self._core_worker = core_worker

    def __getattr__(self, name):
        return getattr(self._core_worker, name)

    def shutdown_driver(self) -> None:
        self._core_worker.shutdown_driver()
        take_stop_signals()


def shutdown_ray() -> None:
    """ray.shutdown(), with the driver's stop signals its own again as soon as Ray lets go."""
    worker = ray_worker.global_worker
    core_worker = getattr(worker, "core_worker", None)
    # Signal handlers are the main thread's to set; a driver's core worker is the one reset.
    if core_worker is not None and threading.current_thread() is threading.main_thread():
        worker.core_worker = _SignalsTakenBack(core_worker)
    ray.shutdown()


def start_ray(verbose: bool) -> None:
    """Start Ray, or join the cluster RAY_ADDRESS names; nothing if this process has."""
    if ray.is_initialized():
        return
    # "local" when RAY_ADDRESS names no cluster: ray.init would otherwise join the last one
    # `ray start` made on this machine, or wait on it if it is gone.
    address = os.environ.get("RAY_ADDRESS") or "local"
    with ray_processes_in_groups_of_their_own():
        ray.init(address, include_dashboard=False, log_to_driver=verbose)
    take_stop_signals()  # ray.init's SIGTERM handler would end the process at once
