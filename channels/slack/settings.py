"""The ``[channels.<name>]`` keys of a ``type = "slack"`` instance."""

from __future__ import annotations

from typing import Literal

import pydantic

from gateway.channel import ChannelSettings
from gateway.config import check_url

DEFAULT_API_BASE = "https://slack.com/api/"
DEFAULT_AUTHORIZE_URL = "https://slack.com/oauth/v2/authorize"
#: the bot scopes an installation asks for (the same as the shipped app manifest's)
DEFAULT_SCOPES = (
    "app_mentions:read", "assistant:write", "chat:write", "im:history",
    "channels:history", "groups:history", "mpim:history", "files:read",
)


class SuggestedPrompt(pydantic.BaseModel):
    """One suggestion under a new assistant thread: the button's title and the message it sends."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    title: str = pydantic.Field(min_length=1, max_length=75)
    message: str = pydantic.Field(min_length=1)


_DEFAULT_PROMPTS = (
    SuggestedPrompt(title="What can you do?", message="What can you help me with?"),
    SuggestedPrompt(title="Get started", message="How do I get started?"),
    SuggestedPrompt(title="Talk to a person", message="I'd like to talk to a person from the team."),
)


class AssistantSettings(pydantic.BaseModel):
    """``[channels.<name>.assistant]``: Slack's AI app container (the split view from the top bar)."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    #: posted when someone opens a new assistant thread ("" posts nothing)
    greeting: str = "Hi! I'm here to help. Ask me anything, or pick one of these to start:"
    #: shown above the suggested prompts
    prompts_title: str = "Try asking"
    #: up to four suggestions under a new thread (Slack's limit); an empty list shows none
    prompts: tuple[SuggestedPrompt, ...] = pydantic.Field(_DEFAULT_PROMPTS, max_length=4)
    #: the line under the thread while the agent works ("<app> is thinking…")
    status: str = pydantic.Field("is thinking…", min_length=1)
    #: shown in turn in place of ``status`` while the agent works (at most 10, Slack's limit)
    loading_messages: tuple[str, ...] = pydantic.Field(
        ("Thinking…", "Looking into it…", "Putting an answer together…"), max_length=10
    )
    #: tell the agent which channel the person is looking at, in a short preface to the question
    context_preface: bool = False
    #: name the thread after its first question (``assistant.threads.setTitle``)
    set_title: bool = True
    #: answers in assistant threads: Slack's native streaming (falls back to ``update`` like the
    #: channel-wide setting does), or the growing placeholder
    streaming: Literal["native", "update"] = "native"


class SlackSettings(ChannelSettings):
    """Slack app credentials and delivery tuning; usually only the credentials are set.

    One workspace: ``bot_token`` (and ``signing_secret``). Many workspaces: ``client_id``,
    ``client_secret`` and ``signing_secret`` and no ``bot_token``; each workspace installs the
    app through ``/webhooks/<name>/install`` and its tokens live in the store.
    """

    bot_token: str = ""
    #: required for the Events API (``mode = "events"``); Socket Mode requests are not signed
    signing_secret: str = ""
    #: multi-workspace installs (OAuth): the app's credentials from "Basic Information"
    client_id: str = ""
    client_secret: str = ""
    #: bot scopes an installation asks for
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    #: refresh a rotating bot token this many minutes before it expires
    token_refresh_minutes: int = pydantic.Field(120, ge=1, le=720)
    authorize_url: str = DEFAULT_AUTHORIZE_URL
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
    assistant: AssistantSettings = AssistantSettings()

    @pydantic.field_validator("api_base")
    @classmethod
    def _url(cls, v: str) -> str:
        # slack_sdk joins method names onto the base, so it must end with a slash.
        return check_url(v).rstrip("/") + "/"

    @pydantic.field_validator("authorize_url")
    @classmethod
    def _authorize_url(cls, v: str) -> str:
        return check_url(v)

    @property
    def multi_workspace(self) -> bool:
        """True when workspaces install the app through OAuth instead of one ``bot_token``."""
        return not self.bot_token

    @pydantic.model_validator(mode="after")
    def _mode_keys(self) -> SlackSettings:
        if self.mode == "events" and not self.signing_secret:
            raise ValueError("signing_secret is required unless mode = \"socket\"")
        if self.mode == "socket" and not self.app_token.startswith("xapp-"):
            raise ValueError("mode = \"socket\" needs app_token (an app-level token, xapp-…)")
        if self.bot_token:
            if self.client_id or self.client_secret:
                raise ValueError("set either bot_token (one workspace) or client_id and client_secret "
                                 "(installs into many workspaces), not both")
            return self
        if not self.client_id or not self.client_secret:
            raise ValueError("bot_token is required (or client_id and client_secret, to install into many "
                             "workspaces)")
        if self.mode != "events":
            raise ValueError("installing into many workspaces (client_id) needs mode = \"events\"")
        return self
