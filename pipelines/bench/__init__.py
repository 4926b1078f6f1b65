"""`make bench` and `make bench-scale`: training throughput (`model`), the char encoder
(`chars`), where a sweep's time goes (`sweep`), training memory per epoch (`memory`), and a
sweep on each cluster layout (`scale`)."""
