"""Long polling (``mode = "polling"``) for bots without a public URL.

Each batch from ``getUpdates`` is journaled through ``services.accept`` *before* the offset is
advanced and persisted, so a crash in between redelivers updates that the journal then drops as
duplicates: nothing is lost and nothing is answered twice.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from telegram.error import Conflict

from channels.telegram.api import call
from gateway.errors import ChannelError, ChannelPermanentError, ChannelRateLimited

if TYPE_CHECKING:
    from channels.telegram.channel import TelegramChannel

#: the longest pause between failed getUpdates calls, seconds
MAX_BACKOFF = 30.0


def offset_key(channel: TelegramChannel) -> str:
    """Store key of the next update id to fetch; per bot, so renaming the channel keeps it."""
    return f"telegram.{channel.me.id}.offset"


async def poll(channel: TelegramChannel) -> None:
    """Fetch, journal and confirm updates until cancelled."""
    from channels.telegram.channel import ALLOWED_UPDATES

    store = channel.services.store
    stored = await store.get_value(offset_key(channel))
    offset = int(stored) if stored else None
    # getUpdates is refused (409) while a webhook is registered; polling mode means no webhook.
    await call(channel.bot.delete_webhook(drop_pending_updates=False))
    channel.log.info("Telegram long polling started (offset %s)", offset)
    backoff = 1.0
    while True:
        try:
            updates = await call(
                channel.bot.get_updates(
                    offset=offset, timeout=channel.settings.poll_timeout, allowed_updates=list(ALLOWED_UPDATES)
                )
            )
        except ChannelRateLimited as exc:
            await asyncio.sleep(exc.retry_after)
            continue
        except ChannelPermanentError:
            raise  # the token was revoked: the supervisor reports it
        except ChannelError as exc:
            if isinstance(exc.__cause__, Conflict):
                channel.log.warning("another getUpdates client or a webhook holds this bot: %s", exc)
            else:
                channel.log.warning("getUpdates failed, retrying in %.0f s: %s", backoff, exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
            continue
        backoff = 1.0
        if not updates:
            continue
        events = []
        for update in updates:
            events.extend(await channel.events_for(update))
        if events:
            await channel.services.accept(events)
        offset = max(u.update_id for u in updates) + 1
        await store.set_value(offset_key(channel), str(offset))
