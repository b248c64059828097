"""plr's benchmarks: decision latency, compile time, CLI start, memory and proxy overhead.

Run them all with ``python -m benchmarks`` (``--quick`` for a smoke test, ``--only NAME`` to
pick some); see docs/performance.md for what each measures and the baseline it is compared to.
"""
