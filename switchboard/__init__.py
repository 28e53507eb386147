"""Kits for people who extend Switchboard: :mod:`switchboard.testing` proves a plugin against the gateway.

The gateway itself lives in ``gateway`` (core), ``channels`` and ``adapters``; nothing there imports
this package.
"""
