"""Switchboard's benchmark suite: ``python -m bench`` (see docs/benchmarks.md).

Every component runs in its own process on this machine: the gateway (``switchboard serve``), the
Chatbase emulator (instrumented to timestamp the tokens it sends), the fake Slack and Twilio APIs
(timestamping the calls they receive), a private ``redis-server``, the load generator, and the
hand-written baseline app. Timestamps from different processes are comparable because they all
read ``CLOCK_MONOTONIC`` (``time.monotonic()``), which Linux keeps system-wide.
"""
