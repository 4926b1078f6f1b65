"""Orchestration on top of the `postag` library: command line, benchmark, sweeps."""
