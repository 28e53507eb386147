"""Test kits for Switchboard and its plugins: contract suites, test doubles, an in-process gateway.

* :mod:`switchboard.testing.stores`: :class:`StoreContract` and one contract suite per store
  protocol (:class:`JournalStoreContract`, :class:`KeyValueStoreContract`,
  :class:`PeopleStoreContract`); subclass one and give it a :class:`StoreOpener`.
* :class:`StubServices`: the core as one channel sees it (a memory store, default settings, an
  ``accept`` that records events), to unit-test a channel's ``verify``/``parse``/``send_text``;
  :func:`inbound_request` builds the webhook request those take.
* :class:`FakeServer`: the base of in-process fakes of a platform's API (aiohttp on 127.0.0.1) that
  record what they receive; point the channel's ``api_base`` at ``base_url()``.
* :mod:`switchboard.testing.teams`: :class:`~switchboard.testing.teams.FakeTeams`, Microsoft Teams'
  side of the Bot Framework (an issuer of real RS256 JWTs behind OpenID metadata, the Entra ID
  token endpoint, the Bot Connector with Teams' streaming rules), for the ``teams`` channel.
* :func:`running_gateway`: a whole gateway in-process on a free port, talking to the Chatbase
  emulator, with your channel configured like any other.
* :func:`wait_until`: wait for a condition instead of sleeping a fixed time.

This package needs pytest and pytest-asyncio: install the ``testing`` extra
(``pip install 'switchboard[testing]'``; the ``dev`` extra includes it). The gateway never imports
it, so neither is a runtime dependency.
"""

from switchboard.testing.fakes import FakeServer
from switchboard.testing.gateway import GatewayUnderTest, make_settings, running_gateway
from switchboard.testing.services import StubServices, inbound_request
from switchboard.testing.stores import (
    JournalStoreContract,
    KeyValueStoreContract,
    PeopleStoreContract,
    StoreContract,
    StoreOpener,
)
from switchboard.testing.waiting import wait_until

__all__ = [
    "FakeServer",
    "GatewayUnderTest",
    "JournalStoreContract",
    "KeyValueStoreContract",
    "PeopleStoreContract",
    "StoreContract",
    "StoreOpener",
    "StubServices",
    "inbound_request",
    "make_settings",
    "running_gateway",
    "wait_until",
]
