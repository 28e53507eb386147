"""Delivering answers: Teams' streaming protocol in personal chats, post-then-update elsewhere.

Group chats and channels grow the answer through the core's :class:`EditingReply` (typing until
the first words, then one message updated at most once per ``edit_interval``: Teams allows a bot
about seven operations a second per conversation and fewer over 30 seconds).

Personal chats use Teams' streaming protocol (one stream per chat at a time, about one request a
second): an *informative* typing activity (the "Thinking…" bar) whose id becomes the stream id,
then *streaming* typing activities carrying all the text so far with a growing
``streamSequence``, then the *final* message activity with the same stream id. The stream id,
the sequence and each delivered part are saved in the progress (each send announced first, as
every channel does), so a turn resumed after a crash ends the stream it started instead of opening
another. If Teams refuses the final step (the stream expired while we were down), the answer is
posted as an ordinary message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from channels.teams import messages
from channels.teams.connector import MessageGone, StreamRefused
from channels.teams.markup import to_teams
from gateway.channel import Answer, Progress, Reply
from gateway.editing import EditingReply, EditLimits, Throttle
from gateway.errors import ChannelError, ChannelRateLimited
from gateway.text import split_text

if TYPE_CHECKING:
    from channels.teams.channel import TeamsChannel
    from gateway.events import InboundEvent

#: Markdown characters per message (Teams' limit is about 28 KB of activity)
SEGMENT_LIMIT = 8000


@dataclass(frozen=True, slots=True)
class TeamsContent:
    """One message: its Teams Markdown, and the answer id its feedback rates (last part only)."""

    text: str
    rates: str | None = None
    #: the agent wrote it (interim text, an answer); a command's notice or a staff reply is not
    ai: bool = True


class TeamsMessages:
    """Messages in one group chat or channel thread, for :class:`EditingReply`."""

    def __init__(self, channel: TeamsChannel, event: InboundEvent) -> None:
        self.teams = channel
        self.event = event
        interval = channel.settings.edit_interval
        self.limits = EditLimits(max_length=SEGMENT_LIMIT, interval=interval, spacing=0.2, keep_partial=False)

    def placeholder(self) -> None:
        return None  # the typing indicator shows until the first words

    def render(self, markdown: str, answer: Answer | None) -> TeamsContent:
        rates = answer.message_id if answer is not None and self.teams.settings.feedback != "off" else None
        ai = answer is None or answer.message_id is not None
        return TeamsContent(to_teams(markdown), rates, ai)

    def _activity(self, content: TeamsContent) -> dict[str, Any]:
        return messages.answer(content.text, feedback=self.teams.settings.feedback, message_id=content.rates,
                               ai=content.ai)

    async def post(self, index: int, content: TeamsContent) -> str:
        reply = self.event.reply
        activity = self._activity(content)
        if index == 0 and reply.get("activity_id") and reply.get("type") != "channel":
            activity["replyToId"] = reply["activity_id"]
        posted = await self.teams.connector.send(reply["service_url"], reply["conversation_id"], activity)
        await self.teams.remember_answer(self.event, posted, content.rates)
        return posted

    async def edit(self, message: str, content: TeamsContent) -> bool:
        reply = self.event.reply
        try:
            await self.teams.connector.update(reply["service_url"], reply["conversation_id"], message,
                                              self._activity(content))
        except MessageGone:
            return False  # someone deleted it: EditingReply posts it anew
        await self.teams.remember_answer(self.event, message, content.rates)
        return True

    async def delete(self, message: str) -> None:
        reply = self.event.reply
        await self.teams.connector.delete(reply["service_url"], reply["conversation_id"], message)


def editing_reply(channel: TeamsChannel, event: InboundEvent, progress: Progress) -> EditingReply[str, TeamsContent]:
    posted: list[str] = progress.data.setdefault("messages", [])
    return EditingReply(channel, event, progress, TeamsMessages(channel, event), posted)


class StreamingReply(Reply):
    """Teams' streaming protocol in a personal chat; see the module docstring."""

    channel: TeamsChannel

    def __init__(self, channel: TeamsChannel, event: InboundEvent, progress: Progress) -> None:
        super().__init__(channel, event, progress)
        self.state: dict[str, Any] = progress.data.setdefault("stream", {})
        self._latest = ""
        self._sent = ""
        self._throttle = Throttle(self._chunk, channel.settings.edit_interval, f"teams-stream-{event.journal_key}")
        self._closed = False

    @property
    def _where(self) -> tuple[str, str]:
        return self.event.reply["service_url"], self.event.reply["conversation_id"]

    async def start(self) -> None:
        if self.state.get("id"):
            return  # resumed: the stream is open already
        informative = messages.stream_chunk(self.channel.settings.thinking_text, "informative", None, 1)
        # Announced first, like every visible send; Teams cannot be asked what a bot sent, so a
        # resumed turn that finds the announcement opens the stream again (the lost one expires).
        await self.progress.intend(0)
        try:
            stream_id = await self.channel.connector.send(*self._where, informative)
        except StreamRefused as exc:  # streaming switched off for this chat: answer in one message
            self.channel.log.info("Teams refused to stream; the answer comes in one message: %s", exc)
            self.state["off"] = True
            self.progress.sent()
            await self.progress.save()
            return
        self.state.update(id=stream_id, seq=1)
        self.progress.sent()
        await self.progress.save()

    async def update(self, text: str) -> None:
        self._latest = text
        if not self._closed and text.strip() and self.state.get("id") and not self.state.get("off"):
            self._throttle.poke()

    async def _chunk(self) -> None:
        text = to_teams(self._latest)
        if self._closed or text == self._sent or len(text) > SEGMENT_LIMIT or not text.startswith(self._sent):
            return  # chunks must extend the previous one; past one message, the final answer shows it all
        sequence = int(self.state.get("seq", 1)) + 1
        try:
            await self.channel.connector.send(*self._where, messages.stream_chunk(text, "streaming", self.state["id"],
                                                                                  sequence))
        except ChannelRateLimited as exc:  # the text waits in _latest; the next chunk catches up
            self._throttle.hold(exc.retry_after)
            self._throttle.poke()
            return
        except ChannelError as exc:
            self.channel.log.info("a streaming chunk failed; the final answer follows: %s", exc)
            self._closed = True
            return
        self._sent = text
        self.state["seq"] = sequence
        await self.progress.save()  # a resumed turn continues the sequence; Teams refuses one that goes back

    async def finish(self, answer: Answer) -> None:
        await self.close()
        parts = split_text(to_teams(answer.text), SEGMENT_LIMIT) or ["…"]
        done = int(self.state.get("parts", 0))
        feedback = self.channel.settings.feedback
        ai = answer.message_id is not None  # not a command's notice, an apology or a staff reply
        for index in range(done, len(parts)):
            last = index == len(parts) - 1
            rates = answer.message_id if last else None
            streamed = index == 0 and self.state.get("id") and not self.state.get("off")
            stream = messages.stream_info("final", self.state["id"], None) if streamed else None
            activity = messages.answer(parts[index], feedback=feedback, message_id=rates, stream=stream, ai=ai)
            await self.progress.intend(index)
            try:
                posted = await self.channel.connector.send(*self._where, activity)
            except StreamRefused as exc:
                if "AlreadyEnded" in str(exc):
                    # Our final landed before a crash (or the person pressed Stop): sending it again
                    # as a message would show the answer twice.
                    self.channel.log.info("the stream had already ended; not sending the answer again")
                    posted = str(self.state["id"])
                else:  # the stream expired while we were down: an ordinary message instead
                    self.channel.log.info("Teams closed the stream; sending the answer as a message: %s", exc)
                    posted = await self.channel.connector.send(*self._where, messages.answer(
                        parts[index], feedback=feedback, message_id=rates, ai=ai))
            await self.channel.remember_answer(self.event, posted, rates)
            self.state["parts"] = index + 1
            self.progress.sent()
            await self.progress.save()

    async def close(self) -> None:
        self._closed = True
        await self._throttle.close()
