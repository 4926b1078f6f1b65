"""`make serve` under load (`load`): sentences a second and latency by request size,
clients and workers, one tagger against an ensemble; `table` prints its figures."""
