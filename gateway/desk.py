"""The support desk: where people from the team take a conversation over (human handoff).

:mod:`gateway.handoff` owns the flow (pause, relay, hand back, timeouts) and speaks only this
protocol; a channel that can be a desk returns one from :meth:`Channel.support_desk` and owns
everything its platform shows (markup, emoji, mentions, message limits). Slack's threads are one
(``channels/slack/desk.py``); another desk (Teams, a helpdesk) is a new channel, not a core change.

A desk works in *places* (a Slack channel id: ``[handoff] support_channel_id``) holding *threads*
(one per handed-off conversation). Staff replies come back as events the desk's channel journals
with ``meta["handoff"]`` set to the conversation key, found through :func:`thread_key`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from gateway.events import InboundEvent

#: why a conversation went back to the agent
HandBack = Literal["resolved", "timeout", "admin", "new", "forget"]
THREAD_PREFIX = "handoff:thread:"


def thread_key(desk: str, place: str, thread: str) -> str:
    """The store value that tells the desk channel ``desk`` a thread is a handoff thread."""
    return f"{THREAD_PREFIX}{desk}:{place}:{thread}"


@dataclass(frozen=True, slots=True)
class Ticket:
    """What the team reads first: who needs a person, why, and how to find the conversation."""

    who: str
    channel: str
    reason: str
    summary: str
    user_id: str
    conversation_id: str | None
    #: a link to the transcript, already filled in (None: not configured, or no conversation yet)
    transcript_url: str | None
    #: the words that hand the conversation back (the first two are shown)
    resolve_words: Sequence[str]


@dataclass(frozen=True, slots=True)
class TranscriptLine:
    """One earlier message of the conversation, trimmed."""

    speaker: Literal["user", "agent"]
    text: str


@dataclass(frozen=True, slots=True)
class DeskThread:
    """One handoff thread: the place it is in and the thread's id there."""

    place: str
    thread: str


class SupportDesk(Protocol):
    """Open a thread for a conversation, post into it, react to staff messages, note the resolve.

    Every method raises :class:`gateway.errors.ChannelError` when the platform refuses.
    """

    async def open_thread(self, place: str, ticket: Ticket) -> DeskThread:
        """Start a thread about ``ticket`` in ``place``."""
        ...

    async def post_transcript(self, thread: DeskThread, lines: Sequence[TranscriptLine] | None, problem: str) -> None:
        """Post the recent messages (``lines``), or why they could not be loaded (``problem``, lines None)."""
        ...

    async def forward(self, thread: DeskThread, who: str, text: str) -> None:
        """Copy what the person wrote into the thread, so it can mention or link no one."""
        ...

    async def unreachable(self, thread: DeskThread) -> None:
        """Tell the team a staff reply cannot reach the person any more."""
        ...

    async def handed_back(self, thread: DeskThread, why: HandBack, by: InboundEvent | None) -> None:
        """Note in the thread that the agent has the conversation again (``by``: the staff message that resolved it)."""
        ...

    def thread_of(self, staff: InboundEvent) -> str:
        """The thread id a staff message (journaled by the desk's channel) was posted in."""
        ...

    async def delivered(self, thread: DeskThread, staff: InboundEvent) -> None:
        """Mark a staff message as delivered to the person (a reaction)."""
        ...
