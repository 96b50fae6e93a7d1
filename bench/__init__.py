"""Benchmarks: each one runs against a real broker and Redis and writes bench/results/<name>.json.

Run them all with ``make bench`` (``python -m bench.run``), or one with
``python -m bench.run <name>``.
"""
