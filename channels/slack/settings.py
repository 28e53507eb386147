"""The ``[channels.<name>]`` keys of a ``type = "slack"`` instance."""

from __future__ import annotations

from typing import Literal

import pydantic

from gateway.channel import ChannelSettings
from gateway.config import check_url

DEFAULT_API_BASE = "https://slack.com/api/"


class SlackSettings(ChannelSettings):
    """Slack app credentials and delivery tuning; only the first three keys are usually set."""

    bot_token: str = pydantic.Field(min_length=1)
    #: required for the Events API (``mode = "events"``); Socket Mode requests are not signed
    signing_secret: str = ""
    api_base: str = DEFAULT_API_BASE
    #: ``events``: Slack calls ``POST /webhooks/<name>``; ``socket``: we connect out with ``app_token``
    mode: Literal["events", "socket"] = "events"
    app_token: str = ""
    #: ``update``: post a placeholder and grow it with ``chat.update``; ``native``: Slack's
    #: ``chat.startStream``/``appendStream``/``stopStream`` (threads only; falls back to ``update``)
    streaming: Literal["update", "native"] = "update"
    #: seconds between two edits of a growing answer (``chat.update`` is a Tier 3 method, ~50/min)
    update_interval: float = pydantic.Field(1.0, ge=0)
    #: characters per message before the answer continues in another message of the thread
    max_message_chars: int = pydantic.Field(3900, ge=200, le=3900)
    #: shown until the first token arrives
    thinking_text: str = "_thinking…_"
    #: feedback (👍/👎) and retry buttons under each finished answer
    buttons: bool = True

    @pydantic.field_validator("api_base")
    @classmethod
    def _url(cls, v: str) -> str:
        # slack_sdk joins method names onto the base, so it must end with a slash.
        return check_url(v).rstrip("/") + "/"

    @pydantic.model_validator(mode="after")
    def _mode_keys(self) -> SlackSettings:
        if self.mode == "events" and not self.signing_secret:
            raise ValueError("signing_secret is required unless mode = \"socket\"")
        if self.mode == "socket" and not self.app_token.startswith("xapp-"):
            raise ValueError("mode = \"socket\" needs app_token (an app-level token, xapp-…)")
        return self
