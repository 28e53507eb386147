"""The UI-message-stream decoder on recorded streams of both event generations.

Samples live in tests/data/streams/: hand-written from the documented examples (both generations,
CRLF, noise, an error event, a cut stream) plus streams captured from the emulator.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.chatbase.sse import SSEDecoder, parse_stream
from gateway.agent import AgentEvent, Finish, MessageStart, TextDelta, ToolCall
from gateway.errors import StreamBroken

STREAMS = Path(__file__).parent / "data" / "streams"


def sample(name: str) -> bytes:
    return (STREAMS / name).read_bytes()


def decode(chunks: list[bytes]) -> tuple[list[AgentEvent], bool]:
    return parse_stream(chunks)


def text_of(events: list[AgentEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def only(events: list[AgentEvent], kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


NEWER_TOOL_CALL = [
    MessageStart("msg_1"),
    TextDelta("Let me check "),
    TextDelta("your order — café ☕ 🚚"),
    ToolCall("call_9", "lookupOrder", {"orderId": "1234"}),
    Finish(
        reason="tool-calls",
        conversation_id="c_7",
        message_id="msg_1",
        user_message_id="msg_0",
        user_id="slack.T01.U02",
        credits=1.0,
        metadata={
            "userMessageId": "msg_0",
            "conversationId": "c_7",
            "userId": "slack.T01.U02",
            "messageId": "msg_1",
            "usage": {"credits": 1},
        },
    ),
]

# Every complete sample and what a user of the client would get from it.
COMPLETE = {
    "newer_tool_call.sse": ("Let me check your order — café ☕ 🚚", "tool-calls", "c_7"),
    "newer_tool_call_crlf.sse": ("Let me check your order — café ☕ 🚚", "tool-calls", "c_7"),
    "message_start_generation.sse": (
        "Quantum computing is a type of computation.",
        "stop",
        "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
    ),
    "legacy.sse": (
        "Quantum computing is a type of computation",
        "stop",
        "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
    ),
    "noise.sse": ("Hello, world", "stop", "c_n"),
    "metadata_after_finish.sse": ("Done.", "stop", "c_after"),
    "emulator_newer_order.sse": ("Let me check order 1234.", "tool-calls", None),
    "emulator_legacy_text.sse": ('You said: "hello". This is message 1 of this conversation.', "stop", None),
}


def test_newer_generation_with_tool_call_decodes_to_typed_events() -> None:
    events, complete = decode([sample("newer_tool_call.sse")])
    assert events == NEWER_TOOL_CALL
    assert complete


@pytest.mark.parametrize("name", sorted(COMPLETE))
def test_complete_samples_give_text_reason_and_conversation(name: str) -> None:
    events, complete = decode([sample(name)])
    text, reason, conversation = COMPLETE[name]
    assert complete
    assert text_of(events) == text
    assert isinstance(events[0], MessageStart) and events[0].message_id
    finish = events[-1]
    assert isinstance(finish, Finish) and finish.reason == reason
    if conversation is not None:
        assert finish.conversation_id == conversation
    else:
        assert finish.conversation_id  # random id from the emulator
    assert len(only(events, Finish)) == 1


@pytest.mark.parametrize("name", sorted(COMPLETE))
def test_split_at_every_byte_boundary_gives_the_same_events(name: str) -> None:
    data = sample(name)
    whole, _ = decode([data])
    for cut in range(1, len(data)):
        assert decode([data[:cut], data[cut:]]) == (whole, True), f"split at byte {cut}"


@pytest.mark.parametrize("name", ["newer_tool_call.sse", "newer_tool_call_crlf.sse", "noise.sse"])
def test_one_byte_chunks_give_the_same_events(name: str) -> None:
    data = sample(name)
    chunks = [data[i : i + 1] for i in range(len(data))]
    assert decode(chunks) == decode([data])


def test_crlf_and_lone_cr_line_endings_match_lf() -> None:
    lf = sample("newer_tool_call.sse")
    assert decode([sample("newer_tool_call_crlf.sse")]) == decode([lf])
    assert decode([lf.replace(b"\n", b"\r")]) == decode([lf])


def test_crlf_split_between_cr_and_lf_is_one_line_ending() -> None:
    data = b'data: {"type":"text-delta","delta":"a"}\r\n\r\ndata: [DONE]\r\n\r\n'
    cut = data.index(b"\r\n") + 1  # between \r and \n
    events, complete = decode([data[:cut], data[cut:]])
    assert text_of(events) == "a" and complete


def test_several_events_in_one_chunk_keep_their_order() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(sample("legacy.sse"))
    assert [type(e) for e in events] == [MessageStart, TextDelta, TextDelta, Finish]
    assert decoder.complete and decoder.done and decoder.finished


def test_events_are_released_as_soon_as_their_blank_line_arrives() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"type":"text-delta","delta":"Hi"}\n') == []
    assert decoder.feed(b"\n") == [TextDelta("Hi")]


def test_unknown_types_comments_and_other_fields_are_ignored() -> None:
    events, _ = decode([sample("noise.sse")])
    assert "thinking" not in text_of(events)
    assert [type(e) for e in events] == [MessageStart, TextDelta, TextDelta, Finish]


def test_message_metadata_event_is_merged_into_finish() -> None:
    events, _ = decode([sample("message_start_generation.sse")])
    finish = events[-1]
    assert isinstance(finish, Finish)
    assert finish.message_id == "msg_abc123"
    assert finish.user_message_id == "msg_xyz789"
    assert finish.user_id == "user_abc123"
    assert finish.credits == 2


def test_message_metadata_sent_just_after_finish_is_merged_too() -> None:
    events, _ = decode([sample("metadata_after_finish.sse")])
    finish = events[-1]
    assert isinstance(finish, Finish)
    assert (finish.conversation_id, finish.user_message_id, finish.credits) == ("c_after", "msg_u", 3)


def test_a_byte_order_mark_is_ignored() -> None:
    events, complete = decode([b"\xef\xbb", b'\xbfdata: {"type":"text-delta","delta":"a"}\n\ndata: [DONE]\n\n'])
    assert text_of(events) == "a" and complete


def test_legacy_finish_metadata_is_read() -> None:
    events, _ = decode([sample("legacy.sse")])
    finish = events[-1]
    assert isinstance(finish, Finish)
    assert (finish.user_id, finish.credits, finish.message_id) == ("user_abc123", 2.0, "msg_abc123")


def test_error_event_raises_stream_broken_with_partial_text() -> None:
    with pytest.raises(StreamBroken) as info:
        decode([sample("error_midway.sse")])
    assert info.value.code == "CHAT_STREAMING_ERROR"
    assert info.value.partial_text == "Half an ans"
    assert "Upstream model failed" in str(info.value)


def test_events_before_an_error_in_the_same_chunk_are_delivered_first() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(sample("error_midway.sse"))
    assert text_of(events) == "Half an ans"
    with pytest.raises(StreamBroken):
        decoder.close()


def test_error_event_alone_in_a_chunk_raises_immediately() -> None:
    decoder = SSEDecoder()
    with pytest.raises(StreamBroken) as info:
        decoder.feed(b'data: {"type":"error","errorText":"boom"}\n\n')
    assert info.value.partial_text == ""


def test_cut_stream_is_detected() -> None:
    events, complete = decode([sample("cut.sse")])
    assert not complete
    assert text_of(events) == "This answer was cut "
    assert not only(events, Finish)


def test_done_without_finish_still_ends_the_round() -> None:
    data = b'data: {"type":"start","messageId":"m"}\n\ndata: {"type":"text-delta","delta":"ok"}\n\ndata: [DONE]\n\n'
    events, complete = decode([data])
    assert complete
    assert events[-1] == Finish(reason="stop", message_id="m")


def test_finish_without_done_is_complete() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"type":"finish","finishReason":"length"}\n\n') == []  # held for metadata
    assert decoder.complete and not decoder.done
    assert decoder.close() == [Finish(reason="length")]


def test_last_event_without_trailing_blank_line_counts_at_close() -> None:
    events, complete = decode([b'data: {"type":"text-delta","delta":"x"}\n\ndata: [DONE]'])
    assert text_of(events) == "x" and complete


def test_events_without_blank_line_separators_are_still_read() -> None:
    data = b'data: {"type":"text-delta","delta":"a"}\ndata: {"type":"text-delta","delta":"b"}\ndata: [DONE]\n\n'
    events, complete = decode([data])
    assert text_of(events) == "ab" and complete


def test_non_json_data_is_skipped() -> None:
    events, complete = decode([b"data: not json\n\n", b'data: {"type":"finish"}\n\n'])
    assert complete and events == [Finish(reason="stop")]


def test_tool_input_streamed_without_available_is_flushed_at_finish() -> None:
    data = (
        b'data: {"type":"tool-input-start","toolCallId":"c1","toolName":"lookupOrder"}\n\n'
        b'data: {"type":"tool-input-delta","toolCallId":"c1","inputTextDelta":"{\\"orderId\\":"}\n\n'
        b'data: {"type":"tool-input-delta","toolCallId":"c1","inputTextDelta":"\\"7\\"}"}\n\n'
        b'data: {"type":"finish","finishReason":"tool-calls"}\n\n'
    )
    events, _ = decode([data])
    assert events[0] == ToolCall("c1", "lookupOrder", {"orderId": "7"})


def test_multibyte_characters_split_across_chunks_survive() -> None:
    data = 'data: {"type":"text-delta","delta":"☕🚚é"}\n\n'.encode()
    at = data.index("🚚".encode()) + 2  # inside the 4-byte emoji
    events, _ = decode([data[:at], data[at:]])
    assert text_of(events) == "☕🚚é"
