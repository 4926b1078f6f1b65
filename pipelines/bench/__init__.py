"""The benchmarks (`make bench*`), each printing its figures as ratios against a reference
measured in the same run, by what they time:

- `training/`: the tagger itself: the race against the seed notebook's loop (`race`), the
  char encoder (`chars`), memory per epoch (`memory`), tagging raw text (`text`).
- `sweeps/`: a sweep as `make sweep` drives it: where its wall time goes (`timing`, timed by
  `clock`), on each cluster layout (`scale`), and its tracking under many simulated trials
  (`tracking`, `simulated`).
- `serving/`: `make serve` under load (`load`) and its table (`table`).
- `gpu/`: the GPU study (`study`, its `table`), the offline wheel bundle it installs from
  (`bundle`), and `detached.sh`, which runs it in a session of its own.

They import the product (postag/, pipelines/) and nothing imports them.
"""
