"""One turn: an inbound event becomes an agent answer delivered into the channel.

Resolves identity and conversation, carries out in-channel commands (:mod:`gateway.commands`),
keeps the agent out of conversations a person has taken over (:mod:`gateway.handoff`), streams
the agent's answer into the channel's ``Reply``, runs client-side tools between rounds, and
remembers the conversation for the next turn. Agent failures are classified here (start afresh,
apologise); retries of the whole delivery belong to the dispatcher. Each turn logs one
``kind=turn`` line with its duration and outcome.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from gateway import batched
from gateway.agent import AgentClient, AgentEvent, Finish, TextDelta, ToolCall
from gateway.channel import Answer, Progress, Reply
from gateway.commands import NEW_CONVERSATION_TEXT, Command, Controls, Parsed
from gateway.errors import AgentNotFound, BadAgentRequest, ConversationEnded
from gateway.events import InboundEvent
from gateway.handoff import STARTED_TEXT
from gateway.identity import user_id_for
from gateway.logs import log_context
from gateway.recovery import Recovery, asked_marker, recover
from gateway.store import ConversationState, Store
from gateway.tools import ToolContext, ToolRunner, tool_error

if TYPE_CHECKING:
    from gateway.agents import Agents
    from gateway.channel import Channel
    from gateway.metrics import Metrics

log = logging.getLogger(__name__)

__all__ = ["NEW_CONVERSATION_TEXT", "TurnRunner"]
NOTHING_TO_RETRY_TEXT = "There is no answer to retry yet."
HANDED_OFF_OUTPUT = {"status": "handed_off", "message": "A person from the support team is taking over."}
MESSAGE_MAP_TTL = 30 * 24 * 3600.0
TOOL_LOOP_TEXT = "Sorry, I could not finish that request (too many steps). Please try again."


def agent_text(event: InboundEvent) -> str:
    """What the agent reads: the message, after the channel's ``meta["preface"]`` when it gave one
    (context the person did not type, such as where they are; commands and handoffs never see it)."""
    preface = event.meta.get("preface")
    return f"{preface}\n\n{event.text}" if isinstance(preface, str) and preface else event.text


class TurnRunner:
    """Runs turns; shared by every channel and worker."""

    def __init__(
        self,
        *,
        agents: Agents,
        store: Store,
        tools: ToolRunner,
        metrics: Metrics,
        conversation_ttl: float,
        max_tool_rounds: int,
        controls: Controls,
        log_bodies: bool = False,
    ) -> None:
        self.agents = agents
        self.store = store
        self.tools = tools
        self.metrics = metrics
        self.conversation_ttl = conversation_ttl
        self.max_tool_rounds = max_tool_rounds
        self.controls = controls
        self.log_bodies = log_bodies

    def _agent(self, event: InboundEvent) -> AgentClient:
        """The client of the agent the event's channel talks to."""
        return self.agents.for_channel(event.channel)

    async def user_id(self, event: InboundEvent) -> str:
        """The Chatbase userId of the event's sender, following identity links."""
        linked = await self.store.get_link(event.identity.key())
        return linked or user_id_for(event.identity)

    async def conversation(self, event: InboundEvent, touch_at: float | None = None,
                           note: Progress | None = None) -> ConversationState:
        """The active conversation of the event's scope; a fresh one when idle too long.

        ``touch_at``: also record that the sender spoke here (at that time), in the same store call.
        ``note``: the turn's progress, when it will ask the agent unless it stops first (paused,
        retry); a store that can notes the read on the journal entry in the same call, and the
        progress then holds the ``asked`` marker already saved (see :meth:`_mark_asked`).
        """
        at = time.time()
        where = (note.journal_key, at) if note is not None and note.journal_key else None
        read = await batched.turn_read(self.store, event.identity.key(), event.conversation_key, touch_at, where)
        state = self._active(event, read, at)
        if note is not None and read.noted:
            note.data["asked"] = self._marker(event, state, at)
        return state

    def _active(self, event: InboundEvent, read: batched.TurnRead, at: float) -> ConversationState:
        """The conversation a turn reading ``read`` at ``at`` talks in."""
        state = read.state
        user_id = read.link or user_id_for(event.identity)
        # One conversation per scope whoever speaks (a group chat is one conversation); the
        # userId only tags a conversation when it is created, so it is the first speaker's.
        if state is None:
            return ConversationState(conversation_id=None, user_id=user_id)
        if state.conversation_id and at - state.updated_at > self.conversation_ttl:
            return ConversationState(conversation_id=None, user_id=user_id, paused=state.paused)
        return state

    def _asked_before(self, event: InboundEvent, progress: Progress) -> dict[str, Any] | None:
        """The ``asked`` marker an earlier run of this turn left, saved or noted with its read."""
        note = progress.data.pop(batched.READ_NOTE, None)
        marker = progress.data.get("asked")
        if isinstance(marker, dict):
            return marker
        if isinstance(note, dict):
            at, read = batched.from_read_note(note)
            progress.data["asked"] = marker = self._marker(event, self._active(event, read, at), at)
            return marker
        return None

    @staticmethod
    def _marker(event: InboundEvent, state: ConversationState, at: float) -> dict[str, Any]:
        return asked_marker(agent_text(event), state.conversation_id, state.user_id, state.last_message_id, at)

    async def run(self, channel: Channel, event: InboundEvent, reply: Reply) -> Answer | None:
        """Answer ``event`` through ``reply``. Agent errors propagate to the caller's policy."""
        started = time.monotonic()
        outcome = "error"
        agent = self.agents.name_of(event.channel)
        with log_context(event_id=event.journal_key, channel=event.channel, agent=agent,
                         conversation=event.conversation_key):
            try:
                answer, outcome = await self._run(channel, event, reply)
                return answer
            except Exception as exc:
                outcome = f"error:{type(exc).__name__}"
                raise
            finally:
                fields: dict[str, object] = {"kind": "turn", "agent": agent, "event_kind": event.kind,
                                             "outcome": outcome,
                                             "duration_ms": round((time.monotonic() - started) * 1000, 1)}
                if self.log_bodies:
                    fields["text"] = event.text
                log.info("turn %s", outcome, extra=fields)

    async def _run(self, channel: Channel, event: InboundEvent, reply: Reply) -> tuple[Answer | None, str]:
        saved = reply.progress.data.get("answer")
        if isinstance(saved, dict):
            # The agent already answered before a crash: deliver that answer, never ask twice.
            answer = Answer(saved.get("text", ""), saved.get("message_id"), saved.get("conversation_id"))
            if answer.conversation_id:
                # The answer was saved before the conversation: make sure the next turn continues it.
                await self._remember(event, await self.conversation(event), answer.conversation_id,
                                     answer.message_id)
            await reply.finish(answer)
            return answer, "resumed"
        if event.kind == "feedback":
            await self._feedback(channel, event)
            return None, "feedback"
        if event.kind == "notice":
            return await self._deliver(reply, Answer(event.text)), "notice"
        controls, handoff = self.controls, self.controls.handoff
        if event.meta.get("handoff"):
            if handoff is not None:  # a staff message in a handoff thread, not a question
                await handoff.on_staff_message(event, reply.progress)
            return None, "staff_relay"
        parsed = controls.parse(event.text) if event.kind == "message" else None
        if event.kind == "new":
            parsed = Parsed(Command.NEW)
        if parsed is not None and parsed.command is not Command.RETRY:
            await controls.touch(event.identity.key(), event.conversation_key)
            return await self._deliver(reply, await controls.run(parsed, event, self.conversation)), "command"
        prior = self._asked_before(event, reply.progress)
        asks = event.kind != "retry" and parsed is None
        state = await self.conversation(event, controls.touch_due(event.identity.key(), event.conversation_key),
                                        reply.progress if asks and prior is None else None)
        # A marker this run did not find before reading was noted by the store with the read.
        noted = prior is None and isinstance(reply.progress.data.get("asked"), dict)
        if state.paused:
            # Only what the person wrote goes to the staff thread (a retry button has no text).
            taken = await handoff.on_user_message(event) if handoff and event.kind == "message" else "paused"
            if taken != "handed_back":
                log.info("conversation %s is paused (%s); not calling the agent", event.conversation_key, taken)
                return None, taken
            state = await self.conversation(event)
        if event.kind == "retry" or parsed is not None:
            message_id = event.meta.get("message_id") or state.last_message_id
            if not state.conversation_id or not message_id:
                return await self._deliver(reply, Answer(NOTHING_TO_RETRY_TEXT)), "command"
            stream = self._agent(event).retry(state.conversation_id, str(message_id))
            return await self._stream(channel, event, reply, state, stream, kind="retry"), "answered"
        if prior is not None:
            # Resumed after a crash once the agent had been asked: never ask it twice.
            recovered = await self._recover(channel, event, reply, state, prior)
            if recovered is not None:
                return recovered, "recovered"
        try:
            await self._mark_asked(reply, event, state, noted=noted)
            stream = self._agent(event).chat(
                agent_text(event), conversation_id=state.conversation_id, user_id=state.user_id
            )
            return await self._stream(channel, event, reply, state, stream, kind="chat"), "answered"
        except (ConversationEnded, AgentNotFound) as exc:
            # A stored conversation the agent no longer accepts (ended, taken over, deleted):
            # these errors come with the HTTP answer, before any text, so starting afresh once
            # cannot show the user anything twice.
            if state.conversation_id is None:
                raise
            log.info("conversation %s no longer usable (%s); starting a new one", state.conversation_id, exc.code)
            await self.store.drop_conversation(event.conversation_key)
            fresh = ConversationState(conversation_id=None, user_id=state.user_id)
            await self._mark_asked(reply, event, fresh)
            stream = self._agent(event).chat(agent_text(event), conversation_id=None, user_id=state.user_id)
            return await self._stream(channel, event, reply, fresh, stream, kind="chat"), "answered"

    async def _mark_asked(self, reply: Reply, event: InboundEvent, state: ConversationState, *,
                          noted: bool = False) -> None:
        """Saved before the agent call, so a resumed turn knows to look before asking again; the
        store may have noted it already, with the turn's read (``noted``: one store call fewer)."""
        data = reply.progress.data
        marker = data.get("asked")
        if noted and isinstance(marker, dict) and (marker["conversation_id"], marker["user_id"], marker["after"]) == (
            state.conversation_id, state.user_id, state.last_message_id
        ):
            return
        data["asked"] = self._marker(event, state, time.time())
        await reply.progress.save()

    async def _recover(
        self, channel: Channel, event: InboundEvent, reply: Reply, state: ConversationState, marker: dict[str, Any]
    ) -> Answer | None:
        """Finish a turn from what the conversation already holds; None: it must be asked again."""
        await reply.start()  # reading the conversation back may wait for the rate budget
        plan = await recover(self._agent(event), marker, state.conversation_id)
        log.info("resumed turn: %s (conversation %s)", plan.action, plan.conversation_id)
        self.metrics.agent_calls.labels(self.agents.name_of(event.channel), "recovery", plan.action).inc()
        if plan.action == "resend":
            return None
        assert plan.conversation_id is not None
        if plan.conversation_id != state.conversation_id:
            state.conversation_id = plan.conversation_id
            state.last_message_id = None
        if plan.action == "deliver":
            return await self._complete(event, reply, state, plan.text, plan.message_id, plan.conversation_id)
        if plan.action == "regenerate":
            assert plan.message_id is not None
            stream = self._agent(event).retry(plan.conversation_id, plan.message_id)
            return await self._stream(channel, event, reply, state, stream, kind="retry")
        return await self._stream(channel, event, reply, state, None, kind="chat", resume=plan)

    async def _deliver(self, reply: Reply, answer: Answer) -> Answer:
        await reply.finish(answer)
        return answer

    async def _feedback(self, channel: Channel, event: InboundEvent) -> None:
        message_id = event.meta.get("message_id")
        conversation_id = event.meta.get("conversation_id")
        if not conversation_id and message_id:
            conversation_id = await self.store.get_value(
                message_key(event.conversation_key, str(message_id))
            ) or await self.store.get_value(f"msg:{message_id}")  # stored before the key named the conversation
        if not conversation_id:
            state = await self.store.get_conversation(event.conversation_key)
            conversation_id = state.conversation_id if state else None
        if not message_id or not conversation_id:
            log.warning("feedback without a message or conversation id on %s; ignored", event.channel)
            return
        await self._agent(event).set_feedback(str(conversation_id), str(message_id), event.meta.get("feedback"))
        self.metrics.agent_calls.labels(self.agents.name_of(event.channel), "feedback", "ok").inc()
        await channel.feedback_saved(event)

    async def _stream(
        self,
        channel: Channel,
        event: InboundEvent,
        reply: Reply,
        state: ConversationState,
        stream: AsyncIterator[AgentEvent] | None,
        *,
        kind: str,
        resume: Recovery | None = None,
    ) -> Answer:
        """Stream the answer, running client actions between rounds; ``resume`` starts at a
        tool round the conversation already holds (``stream`` is then None)."""
        started = time.monotonic()
        text = resume.text if resume else ""
        first_token = True
        finish: Finish | None = None
        conversation_id = resume.conversation_id if resume else state.conversation_id
        pending = resume.calls if resume else None
        handed_off = False
        unsaved = False  # the agent named a conversation the store does not hold yet
        progress = reply.progress
        await reply.start()
        for round_no in range(self.max_tool_rounds + 1):
            calls: list[ToolCall] = []
            if pending is not None:
                calls, pending = pending, None
                continuing = True  # the results (some may be in already) are followed by a continue
            else:
                continuing = False
                assert stream is not None
                separator_due = bool(text) and not text.endswith(("\n", " "))
                async for item in stream:
                    if isinstance(item, TextDelta) and item.text:
                        if first_token:
                            first_token = False
                            self.metrics.first_token_seconds.labels(event.channel).observe(time.monotonic() - started)
                        if separator_due:
                            text += "\n\n"
                            separator_due = False
                        text += item.text
                        await reply.update(text)
                    elif isinstance(item, ToolCall):
                        calls.append(item)
                    elif isinstance(item, Finish):
                        finish = item
                        if item.conversation_id and item.conversation_id != conversation_id:
                            conversation_id = item.conversation_id
                            # Saved with the answer, or before client actions run (below).
                            self._stamp(state, conversation_id, None)
                            unsaved = True
                call_kind = kind if round_no == 0 else "continue"
                self.metrics.agent_calls.labels(self.agents.name_of(event.channel), call_kind, "ok").inc()
            if not calls and not continuing:
                break
            if unsaved and conversation_id is not None:
                # Client actions may take long: the next turn must find this conversation.
                await self._remember(event, state, conversation_id, None)
                unsaved = False
            if conversation_id is None:
                raise BadAgentRequest("the agent asked for tools but sent no conversation id")
            if round_no == self.max_tool_rounds:
                log.warning("tool rounds exhausted in conversation %s", conversation_id)
                text = (text + "\n\n" + TOOL_LOOP_TEXT).strip()
                break
            asked = progress.data.get("asked")
            if isinstance(asked, dict) and finish is not None and round_no == 0 and not asked.get("user_message_id"):
                # The agent's id for the user's message: a resumed turn matches it exactly.
                asked.update(conversation_id=conversation_id, user_message_id=finish.user_message_id)
            answered = resume.answered if resume and round_no == 0 else frozenset()
            for call in calls:
                done = await self._answer_call(event, state, call, conversation_id, answered, progress)
                handed_off = done or handed_off
            stream = self._agent(event).chat(None, conversation_id=conversation_id)
        if handed_off:
            text = (text + "\n\n" + STARTED_TEXT).strip()
        message_id = finish.message_id if finish else None
        answer = await self._complete(event, reply, state, text, message_id, conversation_id)
        self.metrics.turn_seconds.labels(event.channel).observe(time.monotonic() - started)
        return answer

    async def _answer_call(
        self, event: InboundEvent, state: ConversationState, call: ToolCall, conversation_id: str,
        answered: frozenset[str], progress: Progress,
    ) -> bool:
        """Run one client action and submit its result, exactly once across crashes; True: handed off.

        The output is saved before it is submitted and the submission after it succeeded, so a
        resumed turn neither runs the action again nor submits a result twice; results the
        conversation already holds (``answered``) are skipped.
        """
        outputs = progress.data.setdefault("outputs", {})
        submitted = progress.data.setdefault("submitted", [])
        call_id = call.tool_call_id
        if call_id in answered or call_id in submitted:
            return bool(progress.data.get("handed_off"))
        handoff, handed_off = self.controls.handoff, False
        if handoff is not None and not handoff.covers(event):
            handoff = None  # [handoff] agent names another agent: this one's action is an ordinary tool
        resubmit = call_id in outputs
        if resubmit:
            output = outputs[call_id]
        else:
            if handoff is not None and call.tool_name == handoff.action and not handoff.reachable(event):
                output = tool_error(
                    "HANDOFF_UNAVAILABLE",
                    "A person cannot join this channel (it cannot receive messages later); keep helping "
                    "the user and suggest contacting the team by email or messaging.",
                )
            elif handoff is not None and call.tool_name == handoff.action:
                handed_off = await self._escalate(event, state, call)
                output = HANDED_OFF_OUTPUT if handed_off else tool_error(
                    "HANDOFF_FAILED", "The support team could not be reached; keep helping the user."
                )
                if handed_off:
                    progress.data["handed_off"] = True
            else:
                context = ToolContext(call.tool_name, call_id, conversation_id, state.user_id, event.channel)
                output = await self.tools.run(call, context)
            outputs[call_id] = output
            await progress.save()
        try:
            await self._agent(event).submit_tool_result(conversation_id, call_id, output)
        except AgentNotFound:
            if not resubmit:
                raise
            # Submitted just before a crash (the listing did not show it): the agent has it.
            log.info("tool result %s was already submitted", call_id)
        submitted.append(call_id)
        await progress.save()
        return handed_off or bool(progress.data.get("handed_off"))

    async def _complete(
        self, event: InboundEvent, reply: Reply, state: ConversationState, text: str,
        message_id: str | None, conversation_id: str | None,
    ) -> Answer:
        """Save the finished answer (a resume delivers it without the agent), remember, deliver."""
        answer = Answer(text, message_id, conversation_id)
        await reply.ready()
        reply.progress.data["answer"] = {"text": text, "message_id": message_id, "conversation_id": conversation_id}
        # One store call where it can: the answer (so a resumed turn never asks twice) and the
        # conversation with the message map.
        self._stamp(state, conversation_id, message_id)
        await batched.save_answer(self.store, reply.progress, event.conversation_key, state,
                                  message_key(event.conversation_key, message_id) if message_id else None,
                                  conversation_id, MESSAGE_MAP_TTL)
        await reply.finish(answer)
        return answer

    async def _escalate(self, event: InboundEvent, state: ConversationState, call: ToolCall) -> bool:
        """The agent's handoff action: open the thread and pause (``state`` is saved paused)."""
        assert self.controls.handoff is not None
        given = call.input if isinstance(call.input, dict) else {}
        summary = str(given.get("summary") or given.get("reason") or "")
        return await self.controls.handoff.escalate(
            event, state, reason="The agent asked for a person.", summary=summary
        )

    async def _remember(
        self, event: InboundEvent, state: ConversationState, conversation_id: str, message_id: str | None
    ) -> None:
        self._stamp(state, conversation_id, message_id)
        # Buttons may carry only the message id (Telegram's 64 bytes); feedback after /new must
        # still reach the conversation the answer belongs to. The key names the conversation key
        # so that forgetting a person finds it. A pause set or lifted while the agent was
        # answering (staff, an operator) wins over the one read at the start.
        await batched.remember(self.store, event.conversation_key, state,
                               message_key(event.conversation_key, message_id) if message_id else None,
                               conversation_id, MESSAGE_MAP_TTL)

    @staticmethod
    def _stamp(state: ConversationState, conversation_id: str | None, message_id: str | None) -> None:
        if conversation_id:
            state.conversation_id = conversation_id
        if message_id:
            state.last_message_id = message_id
        state.updated_at = time.time()


def message_key(conversation_key: str, message_id: str) -> str:
    """The store value that maps an answer's message id to its Chatbase conversation."""
    return f"msg:{conversation_key}:{message_id}"
