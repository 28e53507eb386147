"""Telegram Bot API channel (``type = "telegram"``)."""

from channels.telegram.channel import TelegramChannel, TelegramSettings

__all__ = ["TelegramChannel", "TelegramSettings"]
