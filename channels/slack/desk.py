"""Slack as the support desk for human handoff: one thread per conversation in a support channel.

What the team reads is Slack mrkdwn: everything a user or the agent wrote is escaped, so it cannot
mention or link anyone. Staff messages in a handoff thread come back through the Slack channel's
Events API (``SlackChannel._handoff_event``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from channels.slack.api import SlackApi
from gateway.desk import DeskThread, HandBack, Ticket, TranscriptLine
from gateway.events import InboundEvent
from gateway.markup.chat import mrkdwn_escape
from gateway.text import split_text

#: characters per post (Slack's own limit is higher; threads read better in pieces)
POST_LIMIT = 3900
_HANDED_BACK: dict[HandBack, str] = {
    "resolved": ":white_check_mark: Resolved by {by}. The bot answers them again.",
    "timeout": ":hourglass: No reply from the team in time: handed back to the bot.",
    "admin": ":leftwards_arrow_with_hook: Handed back to the bot by an operator.",
    "new": ":leftwards_arrow_with_hook: They started a new conversation: handed back to the bot.",
    "forget": ":wastebasket: Their data was deleted on request; this thread no longer reaches them.",
}


def header_text(ticket: Ticket) -> str:
    """The thread's first message: who, why, the ids, and how to answer and resolve."""
    lines = [
        f":raising_hand: *{mrkdwn_escape(ticket.who)}* needs a person.",
        f"*Why:* {mrkdwn_escape(ticket.reason)}",
    ]
    if ticket.summary:
        lines.append(f"*Summary:* {mrkdwn_escape(ticket.summary)}")
    ids = f"*userId:* `{ticket.user_id}`"
    if ticket.conversation_id:
        ids += f" · *conversation:* `{ticket.conversation_id}`"
        if ticket.transcript_url:
            ids += f" · <{ticket.transcript_url}|transcript>"
    lines.append(ids)
    resolve = " or ".join(f"`{w}`" for w in ticket.resolve_words[:2]) or "the resolve word"
    lines.append(
        f"Reply in this thread: every message goes to them on {mrkdwn_escape(ticket.channel)}. "
        f"Send {resolve} to hand them back to the bot."
    )
    return "\n".join(lines)


def transcript_text(lines: Sequence[TranscriptLine]) -> str:
    """Recent messages as ``*User:*``/``*Agent:*`` lines."""
    shown = [f"*{'User' if line.speaker == 'user' else 'Agent'}:* {mrkdwn_escape(line.text)}" for line in lines]
    return "*Recent messages*\n" + "\n".join(shown) if shown else "_(No earlier messages.)_"


class SlackDesk:
    """:class:`gateway.desk.SupportDesk` on a Slack channel's threads, through the bot's Web API client."""

    def __init__(self, api: Callable[[], SlackApi]) -> None:
        # The client exists once the channel has started; handoffs only happen after that.
        self._api = api

    async def open_thread(self, place: str, ticket: Ticket) -> DeskThread:
        posted = await self._api().call_patiently("chat.postMessage", channel=place, text=header_text(ticket))
        return DeskThread(place, str(posted.get("ts", "")))

    async def post_transcript(self, thread: DeskThread, lines: Sequence[TranscriptLine] | None, problem: str) -> None:
        if lines is None:
            await self._post(thread, f"_(The transcript could not be loaded: {mrkdwn_escape(problem)})_")
        else:
            await self._post(thread, transcript_text(lines))

    async def forward(self, thread: DeskThread, who: str, text: str) -> None:
        await self._post(thread, f"*{mrkdwn_escape(who)}:* {mrkdwn_escape(text)}")

    async def unreachable(self, thread: DeskThread) -> None:
        await self._post(thread, ":warning: I don't know where to reach them any more.")

    async def handed_back(self, thread: DeskThread, why: HandBack, by: InboundEvent | None) -> None:
        who = f"<@{by.identity.id}>" if by is not None else "the team"
        await self._post(thread, _HANDED_BACK[why].format(by=who))

    def thread_of(self, staff: InboundEvent) -> str:
        return str(staff.reply.get("thread_ts"))

    async def delivered(self, thread: DeskThread, staff: InboundEvent) -> None:
        await self._api().call_patiently(
            "reactions.add", channel=thread.place, timestamp=str(staff.reply.get("ts")), name="white_check_mark"
        )

    async def _post(self, thread: DeskThread, text: str) -> None:
        for part in split_text(text, POST_LIMIT):
            await self._api().call_patiently(
                "chat.postMessage", channel=thread.place, thread_ts=thread.thread, text=part
            )
