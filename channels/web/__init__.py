"""Built-in web chat channel (``type = "web"``): a chat page and a streaming chat API."""

from channels.web.channel import WebChannel, WebSettings

__all__ = ["WebChannel", "WebSettings"]
