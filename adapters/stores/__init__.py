"""State stores (``gateway.store.Store``): ``memory://``, ``sqlite:///path.db``, ``redis://host:port/db``.

Each submodule exposes ``create(url)`` and is loaded through the ``switchboard.stores`` entry-point
group, so importing this package stays free of aiosqlite and redis.
"""
