"""In-channel commands and the conversation controls behind them (linking, human handoff).

A command is a configured word sent as the *whole* message, in any case (``[commands]`` in the
config): channels with native slash commands (Telegram, Slack's composer aside) and channels
without (SMS, WhatsApp, email) all work the same way. ``/link`` may carry a code as its argument,
and a message that is only a link code (``ABCD-EF23``) redeems it too. An email's signature
(after a ``-- `` line) does not count as part of the message.

:class:`Controls` holds the :class:`Linker` and :class:`Handoff` of an app, so the turn runner and
the admin API share them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from gateway.channel import Answer
from gateway.config import Settings
from gateway.events import InboundEvent
from gateway.handoff import NOT_HERE_TEXT, STARTED_TEXT, UNAVAILABLE_TEXT, Handoff
from gateway.linking import CODE_MESSAGE, Linker, LinkResult, Moved
from gateway.store import ConversationState, Store

log = logging.getLogger(__name__)

#: how often one identity's "spoke in this conversation" is written (it feeds the admin API)
TOUCH_EVERY = 60.0
_TOUCH_CACHE = 10_000
NEW_CONVERSATION_TEXT = "Started a new conversation. What can I help you with?"
ALREADY_HANDED_OFF_TEXT = "A person from our team already has this conversation; they will answer here."
LINK_TEXTS = {
    LinkResult.LINKED: "Linked: I'll know it's you on both channels now. This chat starts a new conversation.",
    LinkResult.ALREADY: "These chats are already linked.",
    LinkResult.OWN_CODE: "That is the code for this chat: send it from your other channel.",
    LinkResult.INVALID: "That code is not valid or has expired. Send {link} on your other channel for a new one.",
    LinkResult.LOCKED: "Too many wrong codes. Please wait a few minutes before trying again.",
}


class Command(StrEnum):
    NEW = "new"
    RETRY = "retry"
    HELP = "help"
    LINK = "link"
    HUMAN = "human"


_DESCRIPTIONS = {
    Command.NEW: "start a new conversation",
    Command.RETRY: "answer your last message again",
    Command.LINK: "connect this chat with another channel you use, so I know it's you there too",
    Command.HUMAN: "talk to a person from our team",
    Command.HELP: "show this list",
}


@dataclass(frozen=True, slots=True)
class Parsed:
    command: Command
    argument: str = ""


class Controls:
    """Commands, linking and handoff of one app; the turn runner and the admin API share it."""

    def __init__(self, settings: Settings, store: Store, handoff: Handoff | None = None) -> None:
        self.settings = settings
        self.store = store
        self.handoff = handoff
        self.linker = Linker(settings.linking, store) if settings.linking.enabled else None
        enabled = {Command.NEW, Command.RETRY, Command.HELP}
        enabled |= {Command.LINK} if self.linker else set()
        enabled |= {Command.HUMAN} if handoff else set()
        words = settings.commands
        self._words = {w: c for c in Command if c in enabled for w in getattr(words, c.value)}
        self._touched: dict[tuple[str, str], float] = {}

    async def touch(self, identity_key: str, conversation_key: str) -> None:
        """Record who spoke where (admin API, forgetting), at most once a minute per pair and instance."""
        now = time.time()
        pair = (identity_key, conversation_key)
        if now - self._touched.get(pair, 0.0) < TOUCH_EVERY:
            return
        if len(self._touched) >= _TOUCH_CACHE:
            self._touched.clear()
        await self.store.touch_identity(identity_key, conversation_key, now)
        self._touched[pair] = now

    def touch_due(self, identity_key: str, conversation_key: str) -> float | None:
        """The time to record for a touch that is due now (and counted as done), else None.

        For callers that record it together with other store work (one round trip per turn).
        """
        now = time.time()
        pair = (identity_key, conversation_key)
        if now - self._touched.get(pair, 0.0) < TOUCH_EVERY:
            return None
        if len(self._touched) >= _TOUCH_CACHE:
            self._touched.clear()
        self._touched[pair] = now
        return now

    def untouch(self, identity_key: str) -> None:
        """Forget the throttle of an identity whose record was deleted: its next word records it again."""
        for pair in [p for p in self._touched if p[0] == identity_key]:
            del self._touched[pair]

    # -- parsing ---------------------------------------------------------------------------------
    def parse(self, text: str) -> Parsed | None:
        """The command ``text`` is, if it is one."""
        body = text.split("\n-- \n", 1)[0]  # an email signature is not part of the command
        words = " ".join(body.split())
        lowered = words.lower()
        if lowered in self._words:
            return Parsed(self._words[lowered])
        if Command.LINK in self._words.values():
            if CODE_MESSAGE.fullmatch(words):
                return Parsed(Command.LINK, words)
            head, _, rest = words.partition(" ")
            if rest and self._words.get(head.lower()) is Command.LINK:
                return Parsed(Command.LINK, rest)
        return None

    def word(self, command: Command) -> str:
        return next((w for w, c in self._words.items() if c is command), command.value)

    def help_text(self) -> str:
        lines = ["Send one of these as a whole message:"]
        for command in (Command.NEW, Command.RETRY, Command.LINK, Command.HUMAN, Command.HELP):
            if command in self._words.values():
                lines.append(f"{self.word(command)}: {_DESCRIPTIONS[command]}")
        return "\n".join(lines)

    # -- running ---------------------------------------------------------------------------------
    async def run(
        self,
        parsed: Parsed,
        event: InboundEvent,
        conversation: Callable[[InboundEvent], Awaitable[ConversationState]],
    ) -> Answer:
        """Carry out a command (RETRY is the turn runner's: it streams an answer)."""
        if parsed.command is Command.NEW:
            return await self._new(event, conversation)
        if parsed.command is Command.LINK and self.linker is not None:
            return await self._link(self.linker, parsed.argument, event)
        if parsed.command is Command.HUMAN and self.handoff is not None:
            if await self.handoff.active(event.conversation_key):
                return Answer(ALREADY_HANDED_OFF_TEXT)
            if not self.handoff.reachable(event) or not self.handoff.covers(event):
                return Answer(NOT_HERE_TEXT)
            state = await conversation(event)
            ok = await self.handoff.escalate(event, state, reason="They asked for a person.")
            return Answer(STARTED_TEXT if ok else UNAVAILABLE_TEXT)
        return Answer(self.help_text())

    async def _new(
        self, event: InboundEvent, conversation: Callable[[InboundEvent], Awaitable[ConversationState]]
    ) -> Answer:
        key = event.conversation_key
        if self.handoff is not None:
            await self.handoff.hand_back(key, "new")
        state = await self.store.get_conversation(key)
        if state is not None and state.paused:
            # An operator's pause outlives /new: start afresh, still paused.
            fresh = await conversation(event)
            await self.store.put_conversation(key, ConversationState(None, fresh.user_id, paused=True))
        else:
            await self.store.drop_conversation(key)
        return Answer(NEW_CONVERSATION_TEXT)

    async def _link(self, linker: Linker, code: str, event: InboundEvent) -> Answer:
        identity = event.identity.key()
        if not code:
            issued = await linker.issue(identity)
            minutes = max(1, round(self.settings.linking.code_ttl / 60))
            return Answer(
                f"Your link code is {issued}. Within {minutes} minutes, send it from the other channel where "
                f"you talk to us (just the code, or {self.word(Command.LINK)} {issued}), and I'll know it's "
                "you there too."
            )
        result, moved = await linker.redeem(identity, code)
        if moved is not None:
            await self.reset_conversations(moved)
        log.info("link code redeemed", extra={"kind": "link", "outcome": result.value})
        return Answer(LINK_TEXTS[result].format(link=self.word(Command.LINK)))

    async def reset_conversations(self, moved: Moved) -> list[str]:
        """Drop conversations that still carry a moved identity's old ``userId`` (it is fixed per conversation)."""
        dropped = []
        for identity_key, old_user_id in moved.previous.items():
            record = await self.store.get_identity(identity_key)
            for key in record.conversations if record else ():
                state = await self.store.get_conversation(key)
                if state is not None and state.user_id == old_user_id and not state.paused:
                    await self.store.drop_conversation(key)
                    dropped.append(key)
        return dropped
