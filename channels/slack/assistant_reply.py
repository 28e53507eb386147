"""Answers inside assistant threads: "is thinking…" while the agent works, then the answer, then a title.

:class:`AssistantReply` wraps the reply that delivers the answer (native streaming by default,
see ``channels/slack/native.py``): ``assistant.threads.setStatus`` shows the status with its
rotating loading messages until the first words (or an apology) arrive, then the status is cleared
and the inner reply starts. The first question of a thread names it (``setTitle``) once answered.
:class:`GreetingReply` delivers the greeting of a new thread and its suggested prompts.
Status and title are courtesies: Slack refusing them never stops an answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from channels.slack.reply import slack_reply
from gateway.channel import Answer, Progress, Reply
from gateway.errors import ChannelError

if TYPE_CHECKING:
    from channels.slack.api import SlackApi
    from channels.slack.channel import SlackChannel
    from gateway.events import InboundEvent


class AssistantReply(Reply):
    """Status first, the inner reply once there is something to show, the title at the end."""

    channel: SlackChannel

    def __init__(self, channel: SlackChannel, event: InboundEvent, progress: Progress, inner: Reply,
                 api: SlackApi) -> None:
        super().__init__(channel, event, progress)
        self.inner = inner
        self.api = api
        self.target = str(event.reply["channel"])
        self.thread_ts = str(event.reply["thread_ts"])
        self.state = progress.data.setdefault("assistant", {})
        #: a resumed turn that already showed something goes straight to the inner reply
        self._opened = bool(progress.data.get("slack", {}).get("ts"))
        self._status_shown = False

    async def start(self) -> None:
        if self._opened:
            await self.inner.start()
            return
        settings = self.channel.settings.assistant
        self._status_shown = await self._set_status(settings.status, list(settings.loading_messages) or None)

    async def update(self, text: str) -> None:
        if not text.strip():
            return
        await self._open()
        await self.inner.update(text)

    async def finish(self, answer: Answer) -> None:
        await self._open()
        await self.inner.finish(answer)
        await self._set_title()

    async def fail(self, message: str) -> None:
        await self._open()
        await self.inner.fail(message)

    async def close(self) -> None:
        await self.inner.close()
        if self._status_shown and not self._opened:
            await self._set_status("", None)  # a turn that ended without a word: no "thinking…" left

    async def _open(self) -> None:
        """The answer begins: clear the status, start the inner reply."""
        if self._opened:
            return
        self._opened = True
        if self._status_shown:
            self._status_shown = not await self._set_status("", None)
        await self.inner.start()

    async def _set_status(self, status: str, loading: list[str] | None) -> bool:
        try:
            await self.api.call("assistant.threads.setStatus", channel_id=self.target, thread_ts=self.thread_ts,
                                status=status, loading_messages=loading)
        except ChannelError as exc:
            self.channel.log.info("assistant status not shown: %s", exc)
            return False
        return True

    async def _set_title(self) -> None:
        title = self.event.meta.get("assistant_title")
        if not title or self.state.get("titled"):
            return
        try:
            await self.api.call("assistant.threads.setTitle", channel_id=self.target, thread_ts=self.thread_ts,
                                title=str(title))
        except ChannelError as exc:
            self.channel.log.info("assistant thread title not set: %s", exc)
            return
        self.state["titled"] = True
        await self.progress.save()


class GreetingReply(Reply):
    """A new assistant thread's greeting, then its suggested prompts; each done once, even on resume."""

    channel: SlackChannel

    def __init__(self, channel: SlackChannel, event: InboundEvent, progress: Progress, api: SlackApi) -> None:
        super().__init__(channel, event, progress)
        self.api = api
        self.state = progress.data.setdefault("greeting", {})

    async def finish(self, answer: Answer) -> None:
        target, thread_ts = str(self.event.reply["channel"]), str(self.event.reply["thread_ts"])
        settings = self.channel.settings.assistant
        if answer.text:
            # Posted like an answer (no buttons: a notice has no message id), so a resumed turn
            # edits the greeting it already posted instead of greeting twice.
            await slack_reply(self.channel, self.event, self.progress).finish(answer)
        if settings.prompts and not self.state.get("prompts"):
            prompts = [{"title": p.title, "message": p.message} for p in settings.prompts]
            await self.api.call_patiently("assistant.threads.setSuggestedPrompts", channel_id=target,
                                          thread_ts=thread_ts, prompts=prompts,
                                          title=settings.prompts_title or None)
            self.state["prompts"] = True
            await self.progress.save()

    async def fail(self, message: str) -> None:
        pass  # a greeting that could not be posted needs no apology
