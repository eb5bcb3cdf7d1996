"""Benchmarks (not tests): resume cost against the seed's algorithm, and scale figures.

Run all of them with `python -m bench` (`--quick` for a run under two minutes).
"""
