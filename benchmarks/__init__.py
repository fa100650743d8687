"""The repocket benchmark suite: ``python -m benchmarks --help``."""
