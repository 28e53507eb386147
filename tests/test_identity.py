"""Chatbase userIds: valid, injective, deterministic, bounded."""

from __future__ import annotations

from hypothesis import assume, given
from hypothesis import strategies as st

from gateway.events import Identity
from gateway.identity import VALID_USER_ID, escape_part, unescape_part, user_id_for

parts = st.text(max_size=80)


def test_readable_for_common_ids() -> None:
    assert user_id_for(Identity("slack", "T01", "U02")) == "slack.T01.U02"
    assert user_id_for(Identity("twilio-sms", "", "+14155550123")) == "twilio-2dsms..-2b14155550123"


@given(parts, parts, parts)
def test_always_valid_for_chatbase(kind: str, ns: str, ident: str) -> None:
    assert VALID_USER_ID.fullmatch(user_id_for(Identity(kind, ns, ident)))


@given(parts)
def test_escaping_is_reversible(part: str) -> None:
    assert unescape_part(escape_part(part)) == part


@given(st.tuples(parts, parts, parts), st.tuples(parts, parts, parts))
def test_distinct_identities_never_collide(a: tuple[str, str, str], b: tuple[str, str, str]) -> None:
    if a != b:
        assert user_id_for(Identity(*a)) != user_id_for(Identity(*b))


def test_long_ids_keep_a_prefix_and_a_hash() -> None:
    a = user_id_for(Identity("email", "bot@example.com", "x" * 200 + "@example.com"))
    b = user_id_for(Identity("email", "bot@example.com", "x" * 200 + "@example.org"))
    assert len(a) == 128 and len(b) == 128
    assert a.startswith("email.bot-40example")
    assert a != b
    assert VALID_USER_ID.fullmatch(a)


def test_nested_ids_read_as_dotted_parts_and_map_back_to_their_identity() -> None:
    from gateway.admin.people import identity_of_user_id
    from gateway.identity import nested_id

    verified = Identity("web", "site", nested_id("u", "ada@example.com"))
    assert user_id_for(verified) == "web.site.u.ada-40example-2ecom"
    assert identity_of_user_id(user_id_for(verified)) == verified.key()
    assert identity_of_user_id(user_id_for(Identity("web", "site", "u.ada"))) == "web|site|u.ada"


@given(parts, parts)
def test_a_nested_id_never_equals_a_plain_one(first: str, plain: str) -> None:
    from gateway.identity import SUBPART, nested_id

    assume(SUBPART not in first and SUBPART not in plain)  # a plain id never holds the separator
    assert user_id_for(Identity("web", "site", nested_id("u", first))) != user_id_for(Identity("web", "site", plain))
