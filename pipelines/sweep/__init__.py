"""A sweep, by file, in the order it flows:

- `driver`: `make sweep`; opens the sweep and runs its stages in their order.
- `job`: the sweep an experiment file defines (`SweepJob`), where its state lives, its lock;
  `settings`: the file's typed `sweep:` section (`SweepSettings`).
- `state`: the sweep's saved state and its phases (`SweepState`); `life`: its one writer,
  phase by phase (`SweepLife`); `additions`: whether a changed file only adds trials.
- `search`: the search stages in Ray Tune's terms, the search and each extension;
  `plan`: what a search stage trains around the trials its sweep holds; `reuse`: a warm
  start's trials, taken from earlier sweeps; `confirmation`: the best trained again with
  new seeds; `stage`: how one stage (a Tune experiment) runs, on `ray_runtime`.
- `trial`: a trial's one RunConfig, its name, and the trainable it trains in;
  `trial_progress`: the console's lines as trials conclude.
- MLflow records: `parent_run` (the sweep's run), `trial_runs` (each trial's), written per
  epoch through the Tune callback in `mlflow_callback`.
- `conclusion`: the end; `promotion` registers the winner, by the `champion` rule for
  `best`; `importance`: what mattered (fANOVA).
- `stop_signals`: Ctrl-C and SIGTERM, taken as one stop wherever they find the sweep.

A sweep's runs are read back, typed, by pipelines/runs.py.
Imports nothing, so that a command importing one module here loads only what that needs.
"""
