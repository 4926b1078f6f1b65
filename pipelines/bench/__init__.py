"""`make bench` and `make bench-scale`: training throughput (`model`), the char encoder
(`chars`), where a sweep's time goes (`sweep`), training memory per epoch (`memory`), and a
sweep on each cluster layout (`scale`). `make gpu-study`: the GPU study on a lent machine
(`gpu_study`, its table `gpu_table`), with the packages it needs there (`gpu_bundle`), run
past one call's limit by `gpu_detached.sh`."""
