"""Test kits for Switchboard and its plugins: contract suites, fake platforms, an in-process gateway.

* :mod:`switchboard.testing.stores`: :class:`StoreContract` and one contract suite per store
  protocol (:class:`JournalStoreContract`, :class:`KeyValueStoreContract`,
  :class:`PeopleStoreContract`); subclass one and give it a :class:`StoreOpener`.

This package needs pytest and pytest-asyncio: install the ``testing`` extra
(``pip install 'switchboard[testing]'``; the ``dev`` extra includes it). The gateway never imports
it, so neither is a runtime dependency.
"""

from switchboard.testing.stores import (
    JournalStoreContract,
    KeyValueStoreContract,
    PeopleStoreContract,
    StoreContract,
    StoreOpener,
)

__all__ = [
    "JournalStoreContract",
    "KeyValueStoreContract",
    "PeopleStoreContract",
    "StoreContract",
    "StoreOpener",
]
