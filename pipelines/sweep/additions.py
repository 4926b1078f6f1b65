"""Whether an experiment file changed only by adding trials to its sweep: more samples
(`sweep.num_samples`), or, for a grid, more values on an axis. Such a change extends the
sweep, finished or interrupted: the same command trains just the new trials under the same
parent run. A change to what it registers alone (`sweep.register`) concludes it again, with
its trials as they stand. Any other change to an interrupted sweep is refused; to a
finished one, it starts a sweep anew."""

from __future__ import annotations

import copy
import json


def added_trials(before: dict, after: dict) -> str | None:
    """What `after` (an experiment file's values) adds to `before`, in words, when adding
    trials is all it does; None otherwise (no change, or another one)."""
    old, new = copy.deepcopy(before), copy.deepcopy(after)
    old_sweep, new_sweep = old.get("sweep", {}), new.get("sweep", {})
    if not extendable(old_sweep):
        return None
    added = []
    samples = old_sweep.get("num_samples", 1), new_sweep.get("num_samples", 1)
    if isinstance(samples[1], int) and samples[1] > samples[0]:
        added.append(f"sweep.num_samples {samples[0]} -> {samples[1]}")
        new_sweep.pop("num_samples")
        if "num_samples" in old_sweep:
            new_sweep["num_samples"] = samples[0]
    if old_sweep.get("search", "grid") == "grid" == new_sweep.get("search", "grid"):
        for key, axis in new_sweep.get("space", {}).items():
            values = old_sweep.get("space", {}).get(key)
            if grows(values, axis):
                more = [value for value in axis if value not in values]
                added.append(f"sweep.space.{key} + {json.dumps(more)}")
                new_sweep["space"][key] = values
    return ", ".join(added) if added and new == old else None


# The settings of how a sweep concludes, not of what it trains; and their defaults.
CONCLUSION_SETTINGS = {"register": "run"}


def concluded_otherwise(before: dict, after: dict) -> str | None:
    """What `after` changes in how the sweep concludes, in words, when that is all it
    changes; None otherwise."""
    old, new = copy.deepcopy(before), copy.deepcopy(after)
    changed = []
    for key, default in CONCLUSION_SETTINGS.items():
        was = old.get("sweep", {}).pop(key, default)
        now = new.get("sweep", {}).pop(key, default)
        if was != now:
            changed.append(f"sweep.{key} {was} -> {now}")
    return ", ".join(changed) if changed and new == old else None


def grows(before, after) -> bool:
    """`after` is the list `before` with values added (anywhere), none repeated."""
    return (
        isinstance(before, list)
        and isinstance(after, list)
        and len(after) > len(before)
        and all(value in after for value in before)
        and len({json.dumps(value) for value in after}) == len(after)
    )


def extendable(sweep: dict) -> bool:
    """A sweep whose later trials can run in a Tune experiment of their own: not one whose
    winner comes from seeds it trains itself (a confirmation, a search over seeds), which
    read their trials from the search's own experiment."""
    return sweep.get("confirm") is None and "train.seed" not in sweep.get("space", {})
