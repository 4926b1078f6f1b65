"""`make sweep`: a Ray Tune sweep of taggers, every trial in MLflow, the winner registered.
`driver` opens the sweep and runs its stages in order; the rest is five folders, each one
concern, each importing only the folders above it in this list:

- `setup/`: a sweep from its experiment file: the typed, checked `sweep:` section
  (`settings`) and the job it makes, where its state lives, its lock (`job`).
- `lifecycle/`: its life across drivers: the saved state and its phases (`state`), its one
  writer (`life`: opened, resumed, extended, stopped), the parent run in MLflow
  (`parent_run`), stop signals (`signals`), Ray's start and end (`ray_runtime`).
- `trial/`: one trial: the trainable it trains in (`trainable`), the Tune callback that
  records it in MLflow (`callback`, through `records`), the console's lines (`progress`).
- `stages/`: the Tune experiments a sweep runs: how one runs (`stage`), the search and its
  extensions (`search`), trials held from earlier sweeps and the plan around them
  (`held`), the confirmation (`confirmation`).
- `end/`: the conclusion (`conclusion`): who wins and whether `best` moves (`winner`),
  the versions written (`registration`), the seeds as one model (`seed_ensemble`), the
  Pareto front (`pareto`), what mattered (`importance`).

setup and lifecycle import no stage; tests/test_layout.py holds the order. The names the
sweep stores in MLflow are pipelines/names.py's, and its runs are read back, typed, by
pipelines/runs.py. This file imports nothing, so that a command importing one module here
loads only what that needs.
"""
