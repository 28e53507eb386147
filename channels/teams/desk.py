"""Teams as the support desk for human handoff: one thread per conversation in a Teams channel.

``[handoff] desk = "<teams channel name>"`` and ``support_channel_id`` = the channel's id
(``19:...@thread.tacv2``). Each handoff starts a new thread (a proactive conversation in that
channel); staff answer in the thread. Everything a user or the agent wrote is escaped, so it shows
literally and mentions no one. Staff replies come back through the Teams channel's messaging
endpoint (``TeamsChannel`` recognises the thread); with the app's resource-specific consent
(``ChannelMessage.Read.Group``, in the generated manifest) staff need not @mention the bot.
Teams has no API for a bot to react to a message, so ``delivered`` shows nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from channels.teams import messages
from channels.teams.activities import THREAD_SEPARATOR
from channels.teams.markup import teams_escape
from gateway.desk import DeskThread, HandBack, Ticket, TranscriptLine
from gateway.text import split_text

if TYPE_CHECKING:
    from channels.teams.channel import TeamsChannel
    from gateway.events import InboundEvent

#: characters per post in a thread
POST_LIMIT = 7000
_HANDED_BACK: dict[HandBack, str] = {
    "resolved": "✅ Resolved by {by}. The bot answers them again.",
    "timeout": "⌛ No reply from the team in time: handed back to the bot.",
    "admin": "↩️ Handed back to the bot by an operator.",
    "new": "↩️ They started a new conversation: handed back to the bot.",
    "forget": "🗑️ Their data was deleted on request; this thread no longer reaches them.",
}


def header_text(ticket: Ticket) -> str:
    lines = [f"🙋 **{teams_escape(ticket.who)}** needs a person.", f"**Why:** {teams_escape(ticket.reason)}"]
    if ticket.summary:
        lines.append(f"**Summary:** {teams_escape(ticket.summary)}")
    ids = f"**userId:** `{ticket.user_id}`"
    if ticket.conversation_id:
        ids += f" · **conversation:** `{ticket.conversation_id}`"
        if ticket.transcript_url:
            ids += f" · [transcript]({ticket.transcript_url})"
    lines.append(ids)
    resolve = " or ".join(f"`{w}`" for w in ticket.resolve_words[:2]) or "the resolve word"
    lines.append(f"Reply in this thread: every message goes to them on {teams_escape(ticket.channel)}. "
                 f"Send {resolve} to hand them back to the bot.")
    return "\n\n".join(lines)


def transcript_text(lines: Sequence[TranscriptLine]) -> str:
    shown = [f"**{'User' if line.speaker == 'user' else 'Agent'}:** {teams_escape(line.text)}" for line in lines]
    return "**Recent messages**\n\n" + "\n\n".join(shown) if shown else "_(No earlier messages.)_"


class TeamsDesk:
    """:class:`gateway.desk.SupportDesk` on a Teams channel's threads."""

    def __init__(self, channel: TeamsChannel) -> None:
        self.teams = channel

    async def open_thread(self, place: str, ticket: Ticket) -> DeskThread:
        settings = self.teams.settings
        parameters = {
            "isGroup": True,
            "bot": {"id": f"28:{settings.app_id}"},
            "channelData": {"channel": {"id": place}, **({"tenant": {"id": settings.tenant_id}}
                                                          if settings.tenant_id else {})},
            "activity": messages.plain(header_text(ticket)),
        }
        if settings.tenant_id:
            parameters["tenantId"] = settings.tenant_id
        conversation, activity_id = await self.teams.connector.create_conversation(
            await self.teams.service_url(), parameters)
        thread = conversation.partition(THREAD_SEPARATOR)[2] or activity_id
        return DeskThread(place, thread)

    async def post_transcript(self, thread: DeskThread, lines: Sequence[TranscriptLine] | None, problem: str) -> None:
        if lines is None:
            await self._post(thread, f"_(The transcript could not be loaded: {teams_escape(problem)})_")
        else:
            await self._post(thread, transcript_text(lines))

    async def forward(self, thread: DeskThread, who: str, text: str) -> None:
        await self._post(thread, f"**{teams_escape(who)}:** {teams_escape(text)}")

    async def unreachable(self, thread: DeskThread) -> None:
        await self._post(thread, "⚠️ I don't know where to reach them any more.")

    async def handed_back(self, thread: DeskThread, why: HandBack, by: InboundEvent | None) -> None:
        who = teams_escape(str(by.meta.get("name") or "the team")) if by is not None else "the team"
        await self._post(thread, _HANDED_BACK[why].format(by=who))

    def thread_of(self, staff: InboundEvent) -> str:
        return str(staff.reply.get("thread", ""))

    async def delivered(self, thread: DeskThread, staff: InboundEvent) -> None:
        """Teams offers bots no reactions: the staff member's own message is the record."""

    async def _post(self, thread: DeskThread, text: str) -> None:
        conversation = f"{thread.place}{THREAD_SEPARATOR}{thread.thread}"
        for part in split_text(text, POST_LIMIT):
            await self.teams.connector.send(await self.teams.service_url(), conversation, messages.plain(part))
