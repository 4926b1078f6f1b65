"""A sweep, in the order it flows: `driver` runs it, taking stops through `stop_signals`;
`job` says what it is (and resolves each trial's RunConfig), `config` its typed sweep
section; `life` owns its stage, lock, `state` file and parent run; `stages` makes its stages
and orders them, each Tune experiment run by `stage_runner`, whose trials train in `trial`,
show their `progress`, and are logged by `trial_logger` through `records`; `confirm` trains
the best again with new seeds; `conclusion` registers (`promotion`, by the `champion` rule),
tests and reports, with `importance`; `clock` times it all for `make bench`. A sweep's runs
are read back, typed, by pipelines/runs.py.

Imports nothing, so that a command importing one module here loads only what that needs.
"""
