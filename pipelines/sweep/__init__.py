"""A sweep, in the order it flows: `driver` runs it; `job` and `config` say what it is;
`life` owns its stage, lock, state file and parent run; `stages` runs its Tune experiments,
whose trials train in `trial` and are logged by `trial_logger` through `records`; `confirm`
trains the best again with new seeds; `conclusion` registers (`promotion`), tests and
reports, with `importance`. `runs` reads a sweep's runs back, typed.

Imports nothing, so that a command reading a sweep's runs (`postag evaluate`) loads no Ray.
"""
