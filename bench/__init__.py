"""Load generators, baselines and the benchmark report (``python -m bench.run``)."""
