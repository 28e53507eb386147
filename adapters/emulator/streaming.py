"""Rendering an answer: the UI message stream (both generations) and the non-streaming JSON."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from adapters.emulator.brain import words
from adapters.emulator.faults import SHAPES, CutMode, Faults
from adapters.emulator.state import StoredMessage

log = logging.getLogger(__name__)


STREAM_ERROR_TEXT = "The agent failed while answering"

Event = dict[str, Any] | str


__all__ = ["SHAPES", "cut_plan", "document", "encode", "events", "sent_text", "stream"]


def events(msg: StoredMessage, meta: dict[str, Any], *, shape: str = "newer") -> list[Event]:
    """The stream of one answer in ``shape``, ``[DONE]`` last (none for ``error``)."""
    legacy = shape == "legacy"
    out: list[Event] = [{"type": "message-start" if shape == "message-start" else "start", "messageId": msg.id}]
    if shape == "steps":
        out.append({"type": "start-step"})
    text_id = f"text_{msg.id}"
    deltas = words(msg.text)
    if deltas and not legacy:
        out.append({"type": "text-start", "id": text_id})
    for delta in deltas:
        out.append(
            {"type": "text-delta", "delta": delta} if legacy else {"type": "text-delta", "id": text_id, "delta": delta}
        )
    if deltas and not legacy:
        out.append({"type": "text-end", "id": text_id})
    for record in msg.calls:
        call_id, name = record.id, record.call.name
        if not legacy:
            raw = json.dumps(record.call.input)
            half = len(raw) // 2
            out.append({"type": "tool-input-start", "toolCallId": call_id, "toolName": name})
            for piece in (raw[:half], raw[half:]):
                if piece:
                    out.append({"type": "tool-input-delta", "toolCallId": call_id, "inputTextDelta": piece})
        out.append(
            {"type": "tool-input-available", "toolCallId": call_id, "toolName": name, "input": record.call.input}
        )
    if shape == "steps":
        out.append({"type": "finish-step"})
    if shape == "error":
        return [*_cut(out), {"type": "error", "errorText": STREAM_ERROR_TEXT}]
    reason = msg.finish_reason or "stop"
    bare: dict[str, Any] = {"type": "finish", "finishReason": reason}
    if shape == "metadata-event":
        out += [{"type": "message-metadata", "messageMetadata": meta}, bare]
    elif shape == "metadata-flat":
        out += [{"type": "message-metadata", **meta}, bare]
    elif shape == "metadata-after-finish":
        out += [bare, {"type": "message-metadata", "messageMetadata": meta}]
    elif shape == "flat-after-finish":
        rest = {k: v for k, v in meta.items() if k != "messageId"}
        out += [{**bare, "messageMetadata": {"messageId": meta.get("messageId")}}, {"type": "message-metadata", **rest}]
    else:
        out.append({**bare, "metadata" if legacy else "messageMetadata": meta})
    out.append("[DONE]")
    return out


def sent_text(plan: list[Event]) -> str:
    """The answer text a plan carries (what a cut stream left behind)."""
    return "".join(e["delta"] for e in plan if isinstance(e, dict) and e["type"] == "text-delta")


def encode(event: dict[str, Any] | str) -> bytes:
    """One SSE event: a ``data:`` line and a blank line."""
    payload = event if isinstance(event, str) else json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    return f"data: {payload}\n\n".encode()


async def stream(
    request: web.Request,
    msg: StoredMessage,
    meta: dict[str, Any],
    *,
    plan: list[Event],
    token_delay: float,
    cut: CutMode | None,
    faults: Faults | None = None,
) -> web.StreamResponse:
    """Write ``plan`` (see :func:`events`, already cut by :func:`cut_plan` when ``cut``) as
    ``text/event-stream``; an ``abort`` cut then drops the connection.

    While ``faults.drip`` is set, bytes go out one at a time that many seconds apart.
    """
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "x-vercel-ai-ui-message-stream": "v1",
        }
    )
    try:
        # Inside the try: a client that timed out during ``latency`` is gone before the headers.
        await resp.prepare(request)
        for event in plan:
            is_text = isinstance(event, dict) and event["type"] == "text-delta"
            if is_text and token_delay > 0:
                await asyncio.sleep(token_delay)
            await _write(resp, encode(event), faults)
        if cut == "abort" and request.transport is not None:
            # Drop the connection mid-body: the client sees an incomplete chunked payload.
            request.transport.close()
            return resp
        await resp.write_eof()
    except ConnectionResetError:
        log.debug("client went away during a stream")
    return resp


async def _write(resp: web.StreamResponse, data: bytes, faults: Faults | None) -> None:
    """``data``, or while a drip is on, its bytes one by one (the drip is re-read every byte)."""
    sent = 0
    while faults is not None and faults.drip > 0 and sent < len(data):
        await resp.write(data[sent : sent + 1])
        sent += 1
        await asyncio.sleep(faults.drip)
    if sent < len(data):
        await resp.write(data[sent:])


def cut_plan(plan: list[Event]) -> list[Event]:
    """A stream stopped halfway through its text, without finish or [DONE]."""
    return _cut(plan)


def _cut(plan: list[Event]) -> list[Event]:
    """Keep everything up to half of the text deltas (at least one), or just ``start``."""
    deltas = [i for i, e in enumerate(plan) if isinstance(e, dict) and e["type"] == "text-delta"]
    if not deltas:
        return plan[:1]
    keep = deltas[max(0, (len(deltas) + 1) // 2 - 1)]
    return plan[: keep + 1]


def document(msg: StoredMessage, meta: dict[str, Any], *, legacy: bool) -> dict[str, Any]:
    """The non-streaming answer; the older form nests the metadata under ``metadata``."""
    body: dict[str, Any] = {
        "id": msg.id,
        "role": "assistant",
        "parts": [p for p in msg.parts() if p["type"] != "tool-result"],
        "createdAt": msg.created_at,
    }
    fields = {k: v for k, v in meta.items() if k != "messageId"}
    fields["finishReason"] = msg.finish_reason or "stop"
    if legacy:
        body["metadata"] = {"messageId": msg.id, **fields}
    else:
        body.update(fields)
    return body
