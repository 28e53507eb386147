"""Meta's platforms: Facebook Messenger (``type = "messenger"``), Instagram (``type = "instagram"``)
and WhatsApp through the Cloud API (``type = "whatsapp"``)."""

from channels.meta.channel import InstagramChannel, MessengerChannel, MetaChannel, MetaSettings
from channels.meta.whatsapp import WhatsAppChannel, WhatsAppSettings

__all__ = ["InstagramChannel", "MessengerChannel", "MetaChannel", "MetaSettings", "WhatsAppChannel", "WhatsAppSettings"]
