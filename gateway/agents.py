"""Several agents behind one gateway: the agent clients by name, and which one each channel uses.

``[agent]`` is the agent named ``default``; ``[agents.<name>]`` add more, and a channel picks
one with ``agent = "<name>"``. A conversation key starts with its channel's name
(``<channel>:<scope>``), and a channel talks to exactly one agent, so conversations of
different agents never share a key, a journal, a message map or a Chatbase conversation.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.agent import AgentClient
from gateway.config import DEFAULT_AGENT, Settings


def channel_agents(settings: Settings) -> dict[str, str]:
    """The agent name of every configured channel (``default`` unless its section names one)."""
    return {name: str(section.get("agent") or DEFAULT_AGENT) for name, section in settings.channels.items()}


class Agents:
    """The started agent clients, found by agent name, channel or conversation key."""

    def __init__(self, clients: Mapping[str, AgentClient], by_channel: Mapping[str, str]) -> None:
        self.clients = dict(clients)
        self.by_channel = dict(by_channel)

    @property
    def default(self) -> AgentClient:
        return self.clients[DEFAULT_AGENT]

    def name_of(self, channel: str) -> str:
        """The agent name ``channel`` uses (an unknown channel, such as a removed one: the default)."""
        return self.by_channel.get(channel, DEFAULT_AGENT)

    def for_channel(self, channel: str) -> AgentClient:
        return self.clients[self.name_of(channel)]

    def for_conversation(self, conversation_key: str) -> AgentClient:
        """The client of the channel a conversation key (``<channel>:<scope>``) belongs to."""
        return self.for_channel(conversation_key.partition(":")[0])
