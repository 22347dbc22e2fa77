"""Benchmarks. Each runs as `python -m bench.<name>` and prints a JSON summary as its last line.

Performance claims live here, not in timed tests; README quotes the latest figures with
the machine they were measured on.
"""
