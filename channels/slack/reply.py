"""Slack's primitives for :class:`~gateway.editing.EditingReply`: a placeholder, then ``chat.update``.

The ``ts`` of every message posted for an answer is kept in the progress under ``slack.ts``: a
resumed turn, and the fallback from native streaming, edit those messages instead of reposting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from channels.slack.blocks import answer_blocks
from gateway.channel import Answer, Progress
from gateway.editing import EditingReply, EditLimits

if TYPE_CHECKING:
    from channels.slack.channel import SlackChannel
    from gateway.events import InboundEvent

#: what Slack is given when an answer came back empty (it refuses empty messages)
EMPTY_ANSWER = "_(no answer)_"


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
        )
        return str(result["ts"])

    async def edit(self, message: str, content: SlackContent) -> bool:
        # An empty list removes blocks a previous edit added; None would leave them.
        await self.api.call("chat.update", channel=self.target, ts=message, text=content.text,
                            blocks=content.blocks or [])
        return True

    async def delete(self, message: str) -> None:
        await self.api.call("chat.delete", channel=self.target, ts=message)


def slack_reply(channel: SlackChannel, event: InboundEvent, progress: Progress) -> EditingReply[str, SlackContent]:
    """A placeholder that grows into the answer, continuing in more of the thread when it is long."""
    posted: list[str] = progress.data.setdefault("slack", {}).setdefault("ts", [])
    return EditingReply(channel, event, progress, SlackMessages(channel, event), posted)
