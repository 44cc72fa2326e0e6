"""glick benchmarks: shared payloads, timing and reporting (stdlib only).

Entry point is `bench/run`; each subcommand lives in its own module
(`mkext2.py`; later `bundle.py`, `runtime.py`) and uses `payloads.py` for the
trees it measures and `common.py` for timing, tool versions and results.
"""
