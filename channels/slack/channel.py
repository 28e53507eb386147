"""The Slack channel: Events API webhooks (or Socket Mode), threads, streaming answers, buttons.

One workspace with a ``bot_token``, or many that install the app through OAuth
(``channels/slack/oauth.py``), each answered with its own token (``channels/slack/workspaces.py``).
Assistant threads of Slack's AI app container are in ``channels/slack/assistant.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from aiohttp import web

from channels.slack.api import SlackApi, SlackRefused
from channels.slack.assistant import EVENTS as ASSISTANT_EVENTS
from channels.slack.assistant import AssistantThreads
from channels.slack.assistant_reply import AssistantReply, GreetingReply
from channels.slack.blocks import with_feedback_note
from channels.slack.desk import SlackDesk
from channels.slack.inbound import BotIdentity, Trigger, action_events, classify, message_event, thread_of
from channels.slack.installations import StoreInstallationStore
from channels.slack.oauth_paths import install_path, redirect_path
from channels.slack.reply import slack_reply
from channels.slack.settings import SlackSettings
from channels.slack.signature import verify_signature
from channels.slack.workspaces import InstalledWorkspaces, Workspace, WorkspaceRef
from gateway import markdown
from gateway.channel import Channel, InboundRequest, Progress, Reply, Services, WebhookResult
from gateway.desk import thread_key
from gateway.errors import ChannelError, ChannelPermanentError, ConfigError, WebhookRejected
from gateway.events import Identity, InboundEvent
from gateway.media_links import MediaSource
from gateway.text import split_text

if TYPE_CHECKING:
    from channels.slack.oauth import SlackInstaller

#: events saying a workspace took the app (or its bot token) away
UNINSTALL_EVENTS = frozenset({"app_uninstalled", "tokens_revoked"})


class SlackChannel(Channel[SlackSettings]):
    """One Slack app, in one workspace or installed in many; it can also be the support desk."""

    type = "slack"
    Settings = SlackSettings
    max_text_length = 3900

    def __init__(self, name: str, settings: SlackSettings, services: Services) -> None:
        super().__init__(name, settings, services)
        self.me = BotIdentity(user_id="", bot_id="", team_id="")
        self._api: SlackApi | None = None
        self._desk = SlackDesk(lambda: self.api)
        self._installed: InstalledWorkspaces | None = None
        self._assistant: AssistantThreads | None = None
        self._installer: SlackInstaller | None = None  # slack-bolt is imported only when installs are on

    def support_desk(self) -> SlackDesk | None:
        """Handoff threads in a support channel of this workspace (``channels/slack/desk.py``).

        An app installed in many workspaces has no one workspace for the team's threads.
        """
        return None if self.settings.multi_workspace else self._desk

    @property
    def api(self) -> SlackApi:
        """The Web API client of a single-workspace channel."""
        if self._api is None:
            raise ChannelError(f"Slack channel {self.name!r} is not initialized (or serves many workspaces)")
        return self._api

    def api_for(self, event: InboundEvent) -> SlackApi:
        """The client that answers ``event``: the one bot, or the bot of the workspace it came from."""
        if self._installed is not None:
            return self._installed.api(WorkspaceRef.of_event(event))
        return self.api

    @property
    def installations(self) -> StoreInstallationStore | None:
        """Where the workspaces' installations are kept (None for a single-workspace channel)."""
        return self._installed.installations if self._installed is not None else None

    @property
    def assistant(self) -> AssistantThreads:
        if self._assistant is None:
            self._assistant = AssistantThreads(self.name, self.settings.assistant, self.services.store,
                                               self.services.settings.gateway.conversation_ttl)
        return self._assistant

    # -- lifecycle -------------------------------------------------------------------------------
    async def initialize(self) -> None:
        """One workspace: learn our own ids (``auth.test``) so we never answer ourselves.
        Many: open the installation store and the install flow (identities come with each install)."""
        if self.settings.multi_workspace:
            from channels.slack.oauth import SlackInstaller

            self._installed = InstalledWorkspaces(self.name, self.settings, self.services)
            self._installer = SlackInstaller(self.name, self.settings, self.services,
                                             self._installed.installations, self.log)
            return
        self._api = SlackApi(self.settings.bot_token, self.settings.api_base, self.services.http, pacer=self.pacer)
        try:
            await self._learn_identity()
        except SlackRefused as exc:
            raise ConfigError(f"channels.{self.name}.bot_token: Slack refused it ({exc.code})") from exc
        except ChannelError as exc:
            # Slack being briefly unreachable must not keep every other channel down.
            self.log.warning("Slack auth.test failed (%s); retrying when the first event arrives", exc)

    async def _learn_identity(self) -> None:
        auth = await self.api.call_patiently("auth.test")
        self.me = BotIdentity(
            user_id=str(auth.get("user_id", "")), bot_id=str(auth.get("bot_id", "")),
            team_id=str(auth.get("team_id", "")),
        )
        self.log.info("Slack bot user %s in team %s", self.me.user_id, self.me.team_id)

    @property
    def polls(self) -> bool:
        return self.settings.mode == "socket"

    async def run(self) -> None:
        """Socket Mode's receive loop (the Events API needs none: Slack calls the webhook)."""
        if self.settings.mode == "socket":
            from channels.slack.socket import run_socket_mode

            await run_socket_mode(self)

    def describe(self) -> str:
        how = "Socket Mode" if self.settings.mode == "socket" else "Events API webhook"
        where = "installed into workspaces through OAuth" if self.settings.multi_workspace else "one workspace"
        return (f"Slack app via {how}, {where}, Web API at {self.settings.api_base} "
                f"(app manifest: switchboard slack manifest {self.name})")

    def webhook_urls(self, public_url: str) -> list[tuple[str, str]]:
        base = public_url.rstrip("/")
        urls = []
        if self.settings.mode != "socket":  # Socket Mode reaches Slack outbound: nothing to paste
            url = base + self.webhook_path
            urls = [("Event Subscriptions request URL", url), ("Interactivity request URL", url)]
        if self.settings.multi_workspace:
            urls += [("OAuth redirect URL", base + redirect_path(self.name)),
                     ("Install page (Add to Slack)", base + install_path(self.name))]
        return urls

    def routes(self) -> list[web.RouteDef]:
        routes = super().routes()
        if self.settings.multi_workspace:
            routes += [web.get(install_path(self.name), self._install),
                       web.get(redirect_path(self.name), self._oauth_redirect)]
        return routes

    async def _install(self, request: web.Request) -> web.StreamResponse:
        if self._installer is None:
            raise web.HTTPServiceUnavailable(text="not started yet")
        return await self._installer.install(request)

    async def _oauth_redirect(self, request: web.Request) -> web.StreamResponse:
        if self._installer is None:
            raise web.HTTPServiceUnavailable(text="not started yet")
        return await self._installer.redirect(request)

    # -- inbound ---------------------------------------------------------------------------------
    async def verify(self, request: InboundRequest) -> None:
        if not self.settings.signing_secret:
            raise WebhookRejected(403, "this Slack channel runs in Socket Mode and takes no webhooks")
        verify_signature(self.settings.signing_secret, request.headers, request.body)

    async def parse(self, request: InboundRequest) -> WebhookResult:
        content_type = request.headers.get("Content-Type", "")
        if content_type.startswith("application/x-www-form-urlencoded"):
            form = request.form()
            if "payload" not in form:
                return WebhookResult()  # ssl_check and the like: acknowledge, nothing to do
            try:
                payload = json.loads(form["payload"])
            except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
                raise WebhookRejected(400, "malformed interactivity payload") from exc
            return WebhookResult(events=await self.interaction_events(payload))
        body = request.json()
        if not isinstance(body, dict):
            raise WebhookRejected(400, "Slack body is not a JSON object")
        if body.get("type") == "url_verification":
            challenge = json.dumps({"challenge": str(body.get("challenge", ""))})
            return WebhookResult(body=challenge, content_type="application/json")
        if body.get("type") == "event_callback":
            return WebhookResult(events=await self.callback_events(body))
        return WebhookResult()

    async def _workspace(self, ref: WorkspaceRef) -> Workspace | None:
        """The workspace an event came from; None when the app is not installed there (any more)."""
        if self._installed is not None:
            found = await self._installed.resolve(ref)
            if found is None:
                self.log.info("event from workspace %s, which has not installed the app: not answered", ref.key)
            return found
        if not self.me.user_id:
            await self._learn_identity()  # start-up could not; failing here makes Slack retry
        return Workspace(self.me, self.api)

    async def callback_events(self, envelope: dict[str, Any]) -> list[InboundEvent]:
        """Events worth answering in an ``event_callback`` envelope (usually zero or one)."""
        event = envelope.get("event")
        if not isinstance(event, dict):
            raise WebhookRejected(400, "event_callback without an event")
        ref = WorkspaceRef.of_envelope(envelope)
        if event.get("type") in UNINSTALL_EVENTS:
            await self._uninstalled(ref, event)
            return []
        workspace = await self._workspace(ref)
        if workspace is None:
            return []
        me = workspace.me
        routing = {"workspace": ref.to_json()} if self._installed is not None else {}
        if event.get("type") in ASSISTANT_EVENTS:
            team = str(envelope.get("team_id") or me.team_id)
            return await self.assistant.on_event(envelope, event, team, routing)
        trigger = classify(event, me)
        if trigger is None:
            return []
        channel = str(event.get("channel", ""))
        thread = None
        if trigger == "dm" and event.get("thread_ts") and event.get("thread_ts") != event.get("ts"):
            thread = await self.assistant.get(str(event["user"]), channel, str(event["thread_ts"]))
            if thread is not None:
                trigger = "assistant"  # a chat in Slack's AI app container: one conversation per thread
        if trigger not in ("dm", "assistant") and event.get("thread_ts") and event.get("thread_ts") != event.get("ts"):
            staff = await self._handoff_event(envelope, event, trigger, me)
            if staff is not None:
                return staff
        if trigger == "thread_reply" and await self.services.store.get_value(
            self._thread_key(channel, thread_of(event))
        ) is None:
            return []  # a thread we were never asked into
        inbound = message_event(self.name, envelope, event, trigger, me, self._media_linker(ref))
        if inbound is None:
            return []
        if routing:
            inbound = replace(inbound, reply={**inbound.reply, **routing})
        if thread is not None:
            return [await self.assistant.question(inbound, thread)]
        if trigger != "dm":
            # Replies in this thread are for us too, until it has been quiet for a conversation's lifetime.
            ttl = self.services.settings.gateway.conversation_ttl
            await self.services.store.set_value(self._thread_key(channel, thread_of(event)), "1", ttl)
        return [inbound]

    async def _uninstalled(self, ref: WorkspaceRef, event: dict[str, Any]) -> None:
        """A workspace removed the app or revoked its tokens: forget them; its later events go unanswered."""
        if self._installed is None:
            self.log.warning("Slack reports %s for this app's workspace: its bot token no longer works",
                             event.get("type"))
            return
        given = event.get("tokens")
        tokens: dict[str, Any] = given if isinstance(given, dict) else {}
        if event.get("type") == "app_uninstalled" or tokens.get("bot"):
            await self._installed.uninstalled(ref)
        users = tokens.get("oauth")
        if isinstance(users, list) and users:
            await self._installed.user_tokens_revoked(ref, [str(u) for u in users])

    async def _handoff_event(
        self, envelope: dict[str, Any], event: dict[str, Any], trigger: Trigger, me: BotIdentity
    ) -> list[InboundEvent] | None:
        """A staff message in a human-handoff thread: for the handoff, not for the agent (None: not one)."""
        key = thread_key(self.name, str(event.get("channel", "")), thread_of(event))
        conversation = await self.services.store.get_value(key)
        if conversation is None:
            return None
        link = self._media_linker(WorkspaceRef.of_envelope(envelope))
        inbound = message_event(self.name, envelope, event, trigger, me, link)
        return [] if inbound is None else [replace(inbound, meta={**inbound.meta, "handoff": conversation})]

    def _media_linker(self, ref: WorkspaceRef) -> Callable[[str], str]:
        """Links to a message's files; an installed app's links name the workspace whose token fetches them."""
        if self._installed is None:
            return lambda file_id: self.services.media.link(self.name, file_id)
        where = ref.to_json()
        return lambda file_id: self.services.media.link(self.name, json.dumps({"file": file_id, **where}))

    async def resolve_media(self, ref: str, *, stale: bool = False) -> MediaSource:
        """A file's current private URL (``files.info``), fetched with the bot token in a header."""
        api, token = self._api, self.settings.bot_token
        file_id = ref
        if self._installed is not None:
            try:
                linked = json.loads(ref)
                file_id = str(linked["file"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ChannelPermanentError("not a file link of this Slack channel") from exc
            where = WorkspaceRef(str(linked.get("team") or ""), linked.get("enterprise") or None,
                                 bool(linked.get("org")))
            api, token = self._installed.api(where), await self._installed.token(where)
        if api is None:
            raise ChannelError(f"Slack channel {self.name!r} is not initialized")
        info = await api.read("files.info", file=file_id)
        found = info.get("file")
        file: dict[str, Any] = found if isinstance(found, dict) else {}
        url = file.get("url_private_download") or file.get("url_private")
        if not isinstance(url, str) or not url:
            raise ChannelPermanentError("Slack gave no download URL for this file")
        name = file.get("name") if isinstance(file.get("name"), str) else None
        return MediaSource(url, {"Authorization": f"Bearer {token}"}, name)

    async def interaction_events(self, payload: Any) -> list[InboundEvent]:
        if not isinstance(payload, dict):
            raise WebhookRejected(400, "interactivity payload is not a JSON object")
        ref = WorkspaceRef.of_action(payload)
        workspace = await self._workspace(ref) if self._installed is not None else None
        if self._installed is not None and workspace is None:
            return []
        events = action_events(self.name, payload, workspace.me if workspace else self.me)
        routed = []
        for event in events:
            reply = dict(event.reply)
            if self._installed is not None:
                reply["workspace"] = ref.to_json()
            thread_ts = reply.get("thread_ts")
            if thread_ts and await self.assistant.get(event.identity.id, str(reply["channel"]), str(thread_ts)):
                reply["assistant"] = True  # a retry there gets the status, like a question
            routed.append(replace(event, reply=reply))
        return routed

    async def forget(self, identity: Identity) -> None:
        """Their assistant threads' records (which channels they were viewing)."""
        if identity.channel_type == self.type:
            await self.assistant.forget(identity.id)

    def _thread_key(self, channel: str, thread_ts: str) -> str:
        return f"slack:{self.name}:thread:{channel}:{thread_ts}"

    # -- outbound --------------------------------------------------------------------------------
    def render(self, markdown_text: str) -> str:
        return markdown.to_mrkdwn(markdown_text)

    def split(self, rendered: str) -> list[str]:
        return split_text(rendered, self.settings.max_message_chars)

    def open_reply(self, event: InboundEvent, progress: Progress) -> Reply:
        if event.kind == "notice":
            return GreetingReply(self, event, progress, self.api_for(event))
        in_assistant = bool(event.reply.get("assistant")) and event.kind != "feedback"
        streaming = self.settings.assistant.streaming if in_assistant else self.settings.streaming
        resumed_as_update = bool(progress.data.get("slack", {}).get("ts")) and not progress.data["slack"].get(
            "native"
        )
        inner: Reply
        if streaming == "native" and event.reply.get("thread_ts") and not resumed_as_update:
            from channels.slack.native import NativeStreamReply

            inner = NativeStreamReply(self, event, progress)
        else:
            inner = slack_reply(self, event, progress)
        return AssistantReply(self, event, progress, inner, self.api_for(event)) if in_assistant else inner

    async def send_text(self, event: InboundEvent, text: str) -> None:
        """One finished part as a message in the event's thread (used outside streaming)."""
        await self.api_for(event).call_patiently(
            "chat.postMessage", channel=event.reply["channel"], thread_ts=event.reply.get("thread_ts"), text=text
        )

    async def feedback_saved(self, event: InboundEvent) -> None:
        """Show under the answer that the rating was recorded (buttons stay, to change it)."""
        blocks = event.reply.get("blocks")
        if not blocks or not event.reply.get("ts"):
            return
        await self.api_for(event).call_patiently(
            "chat.update",
            channel=event.reply["channel"],
            ts=event.reply["ts"],
            text=event.reply.get("text") or "answer",
            blocks=with_feedback_note(blocks, str(event.meta.get("feedback")), event.identity.id),
        )
