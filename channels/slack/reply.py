"""Slack's primitives for :class:`~gateway.editing.EditingReply`: a placeholder, then ``chat.update``.

The ``ts`` of every message posted for an answer is kept in the progress under ``slack.ts``: a
resumed turn, and the fallback from native streaming, edit those messages instead of reposting.
Every message also carries Slack message metadata naming the journal key and its part number, so a
turn resumed after a crash inside ``chat.postMessage`` finds the message it was posting
(``conversations.replies`` in a thread, ``conversations.history`` at the top level of a DM) and
edits it instead of leaving it behind as a stray placeholder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from channels.slack.api import SlackRefused
from channels.slack.blocks import answer_blocks
from gateway.channel import Answer, Progress
from gateway.editing import EditingReply, EditLimits

if TYPE_CHECKING:
    from channels.slack.channel import SlackChannel
    from gateway.events import InboundEvent

#: what Slack is given when an answer came back empty (it refuses empty messages)
EMPTY_ANSWER = "_(no answer)_"
#: the ``event_type`` of the metadata on every message an answer posts
METADATA_EVENT = "switchboard_answer"
#: how far before the saved intent a lookup starts: clocks differ, and Slack stamps the ts itself
CLOCK_SLACK = 60.0
#: pages of history a lookup reads at most (a busy channel with the message far back: post anew)
LOOKUP_PAGES = 5


@dataclass(frozen=True, slots=True)
class SlackContent:
    """One message as Slack shows it: mrkdwn text, and the blocks of a finished answer's last part."""

    text: str
    blocks: list[dict[str, Any]] | None = None


class SlackMessages:
    """Messages in the event's thread (or at the top level of a DM)."""

    def __init__(self, channel: SlackChannel, event: InboundEvent) -> None:
        self.channel = channel
        self.api = channel.api_for(event)
        self.event = event
        self.target = str(event.reply["channel"])
        self.thread_ts: str | None = event.reply.get("thread_ts")
        settings = channel.settings
        self.limits = EditLimits(
            max_length=settings.max_message_chars, interval=settings.update_interval, empty_text=EMPTY_ANSWER,
            max_wait=self.api.max_wait, rate_limit_attempts=self.api.attempts,
        )

    def placeholder(self) -> SlackContent:
        return SlackContent(self.channel.settings.thinking_text)

    def render(self, markdown: str, answer: Answer | None) -> SlackContent:
        text = self.channel.render(markdown) or EMPTY_ANSWER
        # Buttons need the assistant message id; apologies and interim renders have none.
        if answer is None or not answer.message_id or not self.channel.settings.buttons:
            return SlackContent(text)
        return SlackContent(text, answer_blocks(text, answer.message_id, answer.conversation_id, self.event.scope))

    async def post(self, index: int, content: SlackContent) -> str:
        result = await self.api.call(
            "chat.postMessage", channel=self.target, thread_ts=self.thread_ts, text=content.text,
            blocks=content.blocks, unfurl_links=False, unfurl_media=False,
            metadata={"event_type": METADATA_EVENT,
                      "event_payload": {"key": self.event.journal_key, "part": index}},
        )
        return str(result["ts"])

    async def find(self, index: int, since: float) -> str | None:
        """The ts of part ``index`` of this answer if Slack has it (read from the message metadata)."""
        where: dict[str, Any] = {"channel": self.target, "oldest": f"{since - CLOCK_SLACK:.6f}",
                                 "inclusive": True, "include_all_metadata": True, "limit": 200}
        method = "conversations.history"
        if self.thread_ts:
            method, where["ts"] = "conversations.replies", self.thread_ts
        for _ in range(LOOKUP_PAGES):
            try:
                page = await self.api.call_patiently(method, **where)
            except SlackRefused as exc:
                # A missing history scope must not cost the answer: post anew, as without a lookup.
                self.channel.log.warning("cannot look for a message posted before a restart (%s needs the "
                                         "*:history scopes): %s", method, exc.code)
                return None
            for message in page.get("messages") or []:
                if _is_part(message, self.event.journal_key, index):
                    return str(message["ts"])
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not page.get("has_more") or not cursor:
                return None
            where["cursor"] = cursor
        return None

    async def edit(self, message: str, content: SlackContent) -> bool:
        # An empty list removes blocks a previous edit added; None would leave them.
        await self.api.call("chat.update", channel=self.target, ts=message, text=content.text,
                            blocks=content.blocks or [])
        return True

    async def delete(self, message: str) -> None:
        await self.api.call("chat.delete", channel=self.target, ts=message)


def _is_part(message: Any, key: str, index: int) -> bool:
    metadata = message.get("metadata") if isinstance(message, dict) else None
    if not isinstance(metadata, dict) or metadata.get("event_type") != METADATA_EVENT:
        return False
    payload = metadata.get("event_payload") or {}
    return isinstance(payload, dict) and payload.get("key") == key and payload.get("part") == index


def slack_reply(channel: SlackChannel, event: InboundEvent, progress: Progress) -> EditingReply[str, SlackContent]:
    """A placeholder that grows into the answer, continuing in more of the thread when it is long."""
    posted: list[str] = progress.data.setdefault("slack", {}).setdefault("ts", [])
    return EditingReply(channel, event, progress, SlackMessages(channel, event), posted)
