"""Incremental decoder for the Vercel AI SDK "UI message stream" that Chatbase API v2 speaks.

Pure: bytes in, :mod:`gateway.agent` events out, no I/O. Feed network chunks as they arrive;
events may be split across chunks, several may share one chunk, lines may end in LF, CRLF or CR.

Both documented generations of event names are accepted:

=====================  ==========================================  ===========================
meaning                older pages                                 newer pages
=====================  ==========================================  ===========================
message begins         ``start``                                   ``message-start`` / ``start``
text                   ``text-delta {delta}``                      ``text-start``/``-delta``/``-end``
client action          —                                           ``tool-input-start``/``-delta``/
                                                                   ``-available``
metadata               ``finish {metadata}``                       ``message-metadata``
                                                                   (``{messageMetadata}`` or the
                                                                   fields flattened onto it),
                                                                   ``finish {messageMetadata}``
failure                —                                           ``error {errorText}``
=====================  ==========================================  ===========================

Unknown event types, SSE comments and non-``data`` fields are ignored. ``data: [DONE]`` ends the
stream. :attr:`SSEDecoder.complete` tells a finished stream from a cut one.
"""

from __future__ import annotations

import codecs
import json
import logging
from collections.abc import Iterable
from typing import Any

from gateway.agent import AgentEvent, Finish, MessageStart, TextDelta, ToolCall
from gateway.errors import StreamBroken

log = logging.getLogger(__name__)

STREAMING_ERROR_CODE = "CHAT_STREAMING_ERROR"
_DONE = "[DONE]"
# Event types that carry nothing the gateway needs (steps, block boundaries, reasoning, sources).
_SILENT = frozenset({"text-start", "text-end", "start-step", "finish-step"})


class SSEDecoder:
    """Turns UI-message-stream bytes into agent events, keeping what a cut stream needs.

    ``feed`` returns the events completed by a chunk. An ``error`` event raises
    :class:`~gateway.errors.StreamBroken` (code ``CHAT_STREAMING_ERROR``); events that preceded it
    in the same chunk are returned first and the error is raised by the next ``feed``/``close``.

    :class:`~gateway.agent.Finish` is released at ``[DONE]``, at the next other event, or at
    :meth:`close`, so a ``message-metadata`` event sent just after ``finish`` is still merged.
    """

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        # A chunk ending in "\r" may be the first half of "\r\n": wait for the next byte.
        self._pending_cr = False
        self._data_lines: list[str] = []
        self._pending_error: StreamBroken | None = None
        self._metadata: dict[str, Any] = {}
        self._tool_inputs: dict[str, dict[str, Any]] = {}
        self._text_parts: list[str] = []
        self._held_finish: str | None = None  # finishReason of a finish not yet released
        self._started = False
        #: id from the ``start`` / ``message-start`` event
        self.message_id: str | None = None
        #: a ``finish`` event was seen
        self.finished = False
        #: ``data: [DONE]`` was seen
        self.done = False

    @property
    def complete(self) -> bool:
        """True once the stream ended properly (``finish`` or ``[DONE]``); False means it was cut."""
        return self.finished or self.done

    @property
    def text(self) -> str:
        """All answer text decoded so far (the partial text of a broken stream)."""
        return "".join(self._text_parts)

    def feed(self, chunk: bytes) -> list[AgentEvent]:
        """Decode one network chunk; returns the events it completed, in order."""
        self._raise_pending()
        text = self._utf8.decode(chunk)
        if not text:
            return []
        if not self._started:
            self._started = True
            text = text.removeprefix("\ufeff")  # a byte-order mark is not part of the stream
        if self._pending_cr:
            self._pending_cr = False
            if text.startswith("\n"):
                text = text[1:]
        if text.endswith("\r"):
            text = text[:-1] + "\n"
            self._pending_cr = True
        self._buffer += text
        return self._handle_lines(self._split_lines(complete_tail=False))

    def close(self) -> list[AgentEvent]:
        """Flush at end of input: a last event without its blank line still counts."""
        self._raise_pending()
        self._buffer += self._utf8.decode(b"", final=True)
        lines = self._split_lines(complete_tail=True)
        lines.append("")
        events = self._handle_lines(lines)
        if self._pending_error is None:
            events.extend(self._release_finish())
        return events

    # -- lines and fields ---------------------------------------------------------------------

    def _split_lines(self, *, complete_tail: bool) -> list[str]:
        parts = self._buffer.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        if complete_tail:
            self._buffer = ""
            return parts if parts[-1] else parts[:-1]
        self._buffer = parts.pop()
        return parts

    def _handle_lines(self, lines: Iterable[str]) -> list[AgentEvent]:
        events: list[AgentEvent] = []
        for line in lines:
            if self._pending_error is not None:
                break  # nothing after an error event matters
            if line == "":
                if self._data_lines:
                    data, self._data_lines = self._data_lines, []
                    events.extend(self._dispatch(data))
                continue
            if line.startswith(":"):
                continue  # comment / keep-alive
            name, _, value = line.partition(":")
            if name == "data":
                self._data_lines.append(value[1:] if value.startswith(" ") else value)
            # "event", "id", "retry" and unknown fields carry nothing for us.
        if self._pending_error is not None and not events:
            self._raise_pending()
        return events

    def _dispatch(self, data_lines: list[str]) -> list[AgentEvent]:
        payloads = _decode_payloads(data_lines)
        events: list[AgentEvent] = []
        for payload in payloads:
            if payload == _DONE:
                self.done = True
                if not self.finished:
                    # [DONE] without finish still ends the round; keep the metadata we have.
                    self.finished = True
                    self._held_finish = "stop"
                events.extend(self._release_finish())
                continue
            if isinstance(payload, dict):
                events.extend(self._event(payload))
        return events

    # -- event types --------------------------------------------------------------------------

    def _event(self, obj: dict[str, Any]) -> list[AgentEvent]:
        kind = obj.get("type")
        if kind == "message-metadata":
            meta = obj.get("messageMetadata", obj.get("metadata"))
            if isinstance(meta, dict):
                self._metadata.update(meta)
            else:
                # The flattened form one version of the docs shows: the fields sit on the event.
                self._metadata.update({k: v for k, v in obj.items() if k != "type"})
            return []
        if kind == "finish":
            events = [*self._release_finish(), *self._flush_tool_inputs()]
            self.finished = True
            for key in ("metadata", "messageMetadata"):
                if isinstance(obj.get(key), dict):
                    self._metadata.update(obj[key])
            self._held_finish = _str(obj.get("finishReason")) or "stop"
            return events
        # Anything else after a finish belongs to what follows it: release the finish first.
        return [*self._release_finish(), *self._content_event(kind, obj)]

    def _content_event(self, kind: Any, obj: dict[str, Any]) -> list[AgentEvent]:
        if kind in ("start", "message-start"):
            self.message_id = _str(obj.get("messageId")) or self.message_id
            if isinstance(obj.get("messageMetadata"), dict):
                self._metadata.update(obj["messageMetadata"])
            return [MessageStart(self.message_id)]
        if kind == "text-delta":
            delta = obj.get("delta", obj.get("textDelta"))
            if isinstance(delta, str) and delta:
                self._text_parts.append(delta)
                return [TextDelta(delta)]
            return []
        if kind == "tool-input-start":
            self._tool_start(obj)
            return []
        if kind == "tool-input-delta":
            self._tool_delta(obj)
            return []
        if kind in ("tool-input-available", "tool-call"):
            call = self._tool_available(obj)
            return [call] if call else []
        if kind == "error":
            text = _str(obj.get("errorText")) or "the agent stream failed"
            self._pending_error = StreamBroken(text, code=STREAMING_ERROR_CODE, partial_text=self.text, details=obj)
            return []
        if kind not in _SILENT:
            log.debug("ignoring stream event type %r", kind)
        return []

    def _tool_start(self, obj: dict[str, Any]) -> None:
        call_id = _str(obj.get("toolCallId"))
        if call_id:
            self._tool_inputs[call_id] = {"name": _str(obj.get("toolName")), "text": []}

    def _tool_delta(self, obj: dict[str, Any]) -> None:
        pending = self._tool_inputs.get(_str(obj.get("toolCallId")) or "")
        delta = obj.get("inputTextDelta")
        if pending is not None and isinstance(delta, str):
            pending["text"].append(delta)

    def _tool_available(self, obj: dict[str, Any]) -> ToolCall | None:
        call_id = _str(obj.get("toolCallId"))
        pending = self._tool_inputs.pop(call_id or "", None)
        name = _str(obj.get("toolName")) or (pending["name"] if pending else None)
        if not call_id or not name:
            log.warning("ignoring a tool call without toolCallId/toolName")
            return None
        args = obj["input"] if "input" in obj else obj.get("args", {})
        return ToolCall(call_id, name, args)

    def _flush_tool_inputs(self) -> list[AgentEvent]:
        """Calls whose input streamed but never became "available": use the streamed JSON."""
        calls: list[AgentEvent] = []
        for call_id, pending in self._tool_inputs.items():
            try:
                args = json.loads("".join(pending["text"]) or "{}")
            except ValueError:
                log.warning("tool call %s never completed its input; dropped", call_id)
                continue
            if pending["name"]:
                calls.append(ToolCall(call_id, pending["name"], args))
        self._tool_inputs.clear()
        return calls

    def _release_finish(self) -> list[AgentEvent]:
        if self._held_finish is None:
            return []
        reason, self._held_finish = self._held_finish, None
        return [finish_from_metadata(reason, dict(self._metadata), self.message_id)]

    def _raise_pending(self) -> None:
        if self._pending_error is not None:
            raise self._pending_error


def finish_from_metadata(reason: str, meta: dict[str, Any], message_id: str | None = None) -> Finish:
    """Build a :class:`Finish` from Chatbase message metadata (shared with the JSON form)."""
    usage = meta.get("usage")
    credits = usage.get("credits") if isinstance(usage, dict) else None
    return Finish(
        reason=reason,
        conversation_id=_str(meta.get("conversationId")),
        message_id=_str(meta.get("messageId")) or message_id,
        user_message_id=_str(meta.get("userMessageId")),
        user_id=_str(meta.get("userId")),
        credits=float(credits) if isinstance(credits, int | float) else None,
        metadata=meta,
    )


def parse_stream(chunks: Iterable[bytes]) -> tuple[list[AgentEvent], bool]:
    """Decode a whole recorded stream: ``(events, complete)``. Raises like :class:`SSEDecoder`."""
    decoder = SSEDecoder()
    events: list[AgentEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    events.extend(decoder.close())
    return events, decoder.complete


def _decode_payloads(data_lines: list[str]) -> list[Any]:
    joined = "\n".join(data_lines)
    if joined.strip() == _DONE:
        return [_DONE]
    try:
        return [json.loads(joined)]
    except ValueError:
        pass
    # Some servers omit the blank line between events: each data line is then its own event.
    payloads: list[Any] = []
    for line in data_lines:
        if line.strip() == _DONE:
            payloads.append(_DONE)
            continue
        try:
            payloads.append(json.loads(line))
        except ValueError:
            log.warning("ignoring a stream event that is not JSON: %.80r", line)
    return payloads


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
