"""Contract test suites for state stores: one per protocol of :mod:`gateway.store`, and all of them.

A store plugin proves itself in a few lines (run with pytest and pytest-asyncio)::

    import pytest
    from switchboard.testing import StoreContract, StoreOpener

    import my_store


    class TestMyStore(StoreContract):
        @pytest.fixture
        def opener(self, tmp_path):
            return StoreOpener(my_store.create, f"mystore:///{tmp_path}/state.db")

A store that implements one concern subclasses :class:`JournalStoreContract`,
:class:`KeyValueStoreContract` or :class:`PeopleStoreContract` instead. The store must understand
the ``dedup_ttl`` and ``conversation_ttl`` URL options, and start empty in each test.
"""

from switchboard.testing.stores.contract import StoreContract
from switchboard.testing.stores.journal import JournalStoreContract
from switchboard.testing.stores.keyvalue import KeyValueStoreContract
from switchboard.testing.stores.people import PeopleStoreContract
from switchboard.testing.stores.support import StoreOpener, entry, event, pending_keys

__all__ = [
    "JournalStoreContract",
    "KeyValueStoreContract",
    "PeopleStoreContract",
    "StoreContract",
    "StoreOpener",
    "entry",
    "event",
    "pending_keys",
]
