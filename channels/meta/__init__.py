"""Facebook Messenger (``type = "messenger"``) and Instagram (``type = "instagram"``) channels."""

from channels.meta.channel import InstagramChannel, MessengerChannel, MetaChannel, MetaSettings

__all__ = ["InstagramChannel", "MessengerChannel", "MetaChannel", "MetaSettings"]
