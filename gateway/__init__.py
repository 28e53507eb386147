"""Switchboard's asyncio core: config, lifecycle, routing, turns, delivery, tools and plugins.

Nothing in this package imports a vendor SDK; channels and adapters plug in through entry points.
"""

__version__ = "0.1.0"
