"""The GPU study: `seed.yaml` on a CUDA GPU end to end (`study`, its `table`), the wheel
bundle for a GPU node without network (`bundle`), and `detached.sh`, which runs the study
in a session of its own and brings back what is done at each wait."""
