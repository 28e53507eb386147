"""Email channel: IMAP IDLE in, SMTP out, threaded auto-replies without loops."""

from channels.email.channel import EmailChannel, EmailReply
from channels.email.settings import EmailSettings

__all__ = ["EmailChannel", "EmailReply", "EmailSettings"]
