"""Telegram ``Update`` objects to inbound events: who is addressed, what is the text.

Rules (see docs/setup/telegram.md): private chats are always answered,
media included (described with a signed link, see channels/telegram/media.py); in groups the bot
answers only when mentioned (``@username``), replied to, or sent one of its own commands
(``/new``, ``/retry``, ``/start``, bare or as ``/cmd@username``). ``/start`` becomes a greeting
turn ("Hello"), so the agent introduces itself in its own words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from telegram import CallbackQuery, Message, MessageEntity, Update
from telegram.constants import ChatType

from channels.telegram.api import parse_feedback_data
from channels.telegram.media import Linker, media_lines
from gateway.events import Identity, InboundEvent
from gateway.media import message_text

#: what a ``/start`` turn sends the agent
START_TEXT = "Hello"
#: commands answered in groups even without a mention (the configured command words add theirs)
OWN_COMMANDS = frozenset({"start", "new", "retry", "help", "link", "human"})
_COMMAND = re.compile(r"^/([A-Za-z0-9_]{1,32})(?:@([A-Za-z0-9_]{1,64}))?(?=\s|$)")


@dataclass(frozen=True, slots=True)
class BotInfo:
    """Who the bot is: the id from the token, the username learned through getMe."""

    id: int
    username: str | None = None

    def is_me(self, username: str | None) -> bool:
        if not username or not self.username:
            return False
        return username.lower() == self.username.lower()


def events_from_update(
    update: Update, channel: str, bot: BotInfo, link: Linker, own_commands: frozenset[str] = OWN_COMMANDS
) -> list[InboundEvent]:
    """The events one update asks the gateway to handle (often none).

    ``link`` turns a ``file_id`` into the link the agent gets; ``own_commands`` are the command
    names (without ``/``) that a group may send without naming us.
    """
    key = f"{bot.id}:{update.update_id}"
    if update.message is not None:
        event = _message_event(update.message, key, channel, bot, own_commands, link)
        return [event] if event else []
    if update.callback_query is not None:
        event = _feedback_event(update.callback_query, key, channel, bot)
        return [event] if event else []
    return []  # edits, channel posts, member updates: nothing to answer


def _message_event(
    msg: Message, key: str, channel: str, bot: BotInfo, own_commands: frozenset[str], link: Linker
) -> InboundEvent | None:
    user = msg.from_user
    if user is None or user.is_bot:
        return None  # channel posts, anonymous admins, other bots
    # A sticker's emoji is what the person said; the sticker itself follows as a media line.
    text = msg.text or msg.caption or (msg.sticker.emoji if msg.sticker else None) or ""
    items = media_lines(msg, link) if not msg.text else []
    if not text and not items:
        return None  # a service message: members, titles, pins, payments, topics...
    _check_ids(user.id, msg.chat.id, msg.message_id)
    private = msg.chat.type == ChatType.PRIVATE
    command = _COMMAND.match(text) if not items else None  # a caption is never a command
    if command and command.group(2) and not bot.is_me(command.group(2)):
        return None  # /cmd@some_other_bot
    name = command.group(1).lower() if command else None
    to_me = bool(command and command.group(2)) or name in own_commands  # /cmd@us, or one of ours
    if not (private or to_me or _mentions_me(msg, bot) or _replies_to_me(msg, bot)):
        return None
    if command:
        rest = text[command.end() :].strip()
        if name == "start":
            text = START_TEXT  # a deep-link payload after /start is not meant as a question
        else:  # drop the @username suffix so the core sees plain "/new", "/retry"
            text = f"/{name if name in own_commands else command.group(1)} {rest}".strip()
    elif bot.username:
        text = _strip_mention(text, bot.username)
    text = message_text(text, items)
    if not text:
        return None
    reply: dict[str, object] = {"chat_id": msg.chat.id}
    if not private:
        reply["reply_to"] = msg.message_id  # in a busy group, answer the message that asked
    if msg.is_topic_message and _is_id(msg.message_thread_id):
        reply["thread_id"] = msg.message_thread_id
    return InboundEvent(
        channel=channel,
        key=key,
        identity=Identity("telegram", str(bot.id), str(user.id)),
        scope=str(msg.chat.id),
        text=text,
        reply=reply,
        meta={"language_code": user.language_code} if user.language_code else {},
    )


def fill_legacy_fields(data: Any) -> Any:
    """Fields older Bot API payloads (and Telegram's own webhook guide) leave out, filled in.

    PTB requires what the current Bot API always sends: ``User.is_bot`` (Bot API 3.0),
    ``Chat.type`` and the files' ``file_unique_id`` (4.5). Without them a genuine person's message
    would be refused, so: a user without ``is_bot`` is a person (bots always carry it), a chat's
    type follows from its id (private chats are positive), a file's unique id is its file id,
    and a button press without ``chat_instance`` (Bot API 2.0) gets an empty one.
    """
    if isinstance(data, list):
        for item in data:
            fill_legacy_fields(item)
    elif isinstance(data, dict):
        if "first_name" in data and isinstance(data.get("id"), int) and "is_bot" not in data:
            data["is_bot"] = False
        if "file_id" in data and "file_unique_id" not in data:
            data["file_unique_id"] = data["file_id"]
        query = data.get("callback_query")
        if isinstance(query, dict) and "chat_instance" not in query:
            query["chat_instance"] = ""
        chat = data.get("chat")
        if isinstance(chat, dict) and "type" not in chat and isinstance(chat.get("id"), int):
            chat["type"] = "private" if chat["id"] > 0 else "group"
        for value in data.values():
            fill_legacy_fields(value)
    return data


def _feedback_event(query: CallbackQuery, key: str, channel: str, bot: BotInfo) -> InboundEvent | None:
    parsed = parse_feedback_data(query.data)
    if parsed is None or query.message is None:
        return None
    feedback, message_id = parsed
    chat_id = query.message.chat.id
    _check_ids(chat_id, query.message.message_id, query.from_user.id)
    return InboundEvent(
        channel=channel,
        key=key,
        identity=Identity("telegram", str(bot.id), str(query.from_user.id)),
        scope=str(chat_id),
        kind="feedback",
        reply={"chat_id": chat_id, "message_id": query.message.message_id},
        meta={"message_id": message_id, "feedback": feedback},
    )


def _is_id(value: object) -> bool:
    """Telegram ids are integers; ``bool`` is an int to Python but never an id."""
    return isinstance(value, int) and not isinstance(value, bool)


def _check_ids(*values: object) -> None:
    """PTB does not check field types; an id that is not an integer would break the reply later."""
    if not all(_is_id(v) for v in values):
        raise TypeError("a Telegram id is not an integer")


def _mentions_me(msg: Message, bot: BotInfo) -> bool:
    entities = msg.parse_entities([MessageEntity.MENTION, MessageEntity.TEXT_MENTION])
    if msg.caption:
        entities = {**entities, **msg.parse_caption_entities([MessageEntity.MENTION])}
    for entity, text in entities.items():
        if entity.type == MessageEntity.MENTION and bot.is_me(text.lstrip("@")):
            return True
        if entity.type == MessageEntity.TEXT_MENTION and entity.user and entity.user.id == bot.id:
            return True
    return False


def _replies_to_me(msg: Message, bot: BotInfo) -> bool:
    original = msg.reply_to_message
    return original is not None and original.from_user is not None and original.from_user.id == bot.id


def _strip_mention(text: str, username: str) -> str:
    """The text without ``@username``, so the agent reads the question, not the address."""
    cleaned = re.sub(rf"(?<!\w)@{re.escape(username)}\b[,:]?", " ", text, flags=re.IGNORECASE)
    return re.sub(r"[ \t]{2,}", " ", cleaned).strip()
