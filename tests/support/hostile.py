"""Hypothesis strategies for what a hostile or careless user can hand the collector: events and secrets with
huge fields, deep nesting, lone surrogates, numbers too long for Python to read, and odd shapes.

Every value drawn here must be refused: a strategy never produces an event or secret the collector accepts.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

from hypothesis import strategies as st

from tests.support.events import scheduled_event

#: Python refuses to convert integers with more digits than this to or from text (sys.int_info).
INT_MAX_STR_DIGITS = 4_300
#: Secrets Manager's own limit on a SecretString (65,536 bytes); kept under it so moto stores every value.
MAX_SECRET_CHARS = 60_000


def deep_list(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def deep_json(depth: int, opener: str = "[", closer: str = "]") -> str:
    return opener * depth + closer * depth


lone_surrogates = st.integers(0xD800, 0xDFFF).map(chr)
long_digits = st.integers(INT_MAX_STR_DIGITS + 1, 6_000).map(lambda digits: "7" * digits)
#: Integers as JSON would carry them, too long for Python to print (built by arithmetic: int() of the text raises).
long_numbers = st.integers(INT_MAX_STR_DIGITS + 1, 6_000).map(lambda digits: (10**digits - 1) // 9 * 7)
sizes = st.integers(1_000, 500_000)
big_strings = st.tuples(st.text(min_size=1, max_size=3), sizes).map(lambda pair: (pair[0] * pair[1])[: pair[1]])
texts = st.text(alphabet=st.characters(codec=None) | lone_surrogates, min_size=0, max_size=40)
json_trees = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=20,
)

#: A value in a place that accepts none of these: never a boolean, None or a list of configured labels.
hostile_values = st.one_of(
    big_strings,
    texts,
    lone_surrogates,
    long_numbers,
    long_numbers.map(lambda number: -number),
    st.floats(),
    st.integers(1, 100_000).map(deep_list),
    st.integers(1, 100_000).map(deep_json),
    st.lists(json_trees, max_size=4).filter(lambda value: value != ["default"]),
    st.dictionaries(texts, json_trees, min_size=1, max_size=4),
)

#: EventBridge's fields the collector reads (the others, like `region`, are never read nor stored).
_READ_SCHEDULED_FIELDS = ("id", "time", "source", "detail-type", "detail")
_SCHEDULED_KEYS = frozenset(scheduled_event())


def _replace(event: dict[str, Any], field: str, value: object) -> dict[str, Any]:
    return {**event, field: value}


def _sqs(message_id: object, body: object) -> dict[str, Any]:
    return {"Records": [{"eventSource": "aws:sqs", "messageId": message_id, "body": body}]}


_message_ids = st.uuids().map(str)
hostile_sqs_bodies = st.one_of(
    st.integers(1, 100_000).map(deep_json),
    st.integers(1, 30_000).map(lambda depth: deep_json(depth, '{"account": ', "}")),
    long_digits.map(lambda digits: '{"account": ' + digits + "}"),
    long_digits.map(lambda digits: '{"account": "default", "dryRun": ' + digits + "}"),
    big_strings.map(lambda text: json.dumps({"account": text})),
    texts.filter(lambda text: text != "default").map(lambda text: json.dumps({"account": text})),
    json_trees.filter(lambda value: not isinstance(value, bool)).map(
        lambda value: json.dumps({"account": "default", "dryRun": value})
    ),
    texts,
)

#: Where a hostile value goes: every place of every accepted event shape the collector reads.
_PLACES: dict[str, Callable[[Any], object]] = {
    **{f"scheduled {field}": partial(_replace, scheduled_event(), field) for field in _READ_SCHEDULED_FIELDS},
    "scheduled extra key": partial(_replace, scheduled_event(), "extra"),
    "console dryRun": lambda value: {"dryRun": value},
    "console accounts": lambda value: {"accounts": value},
    "console extra key": lambda value: {"dryRun": True, "extra": value},
    "sqs messageId": lambda value: _sqs(value, '{"account": "default"}'),
    "sqs body": lambda value: _sqs(str(uuid.uuid4()), value),
    "sqs record": lambda value: {"Records": [value]},
    "sqs records": lambda value: {"Records": value},
    "the whole event": lambda value: value,
}


def _place(place: str, value: object) -> object:
    if place == "the whole event" and isinstance(value, dict):
        value = {"dryRun": value}  # an object would be a (hostile) console event: still refused, via dryRun
    return _PLACES[place](value)


_KEY_PLACE, _BODY_PLACE = "a hostile key", "a hostile SQS body"


@st.composite
def hostile_events(draw: st.DrawFn) -> object:
    """One hostile value in one place of an accepted event shape (places drawn evenly), or a hostile key."""
    place = draw(st.sampled_from([*sorted(_PLACES), _KEY_PLACE, _BODY_PLACE]))
    if place == _KEY_PLACE:
        event = draw(st.sampled_from([scheduled_event(), {"dryRun": True}]))
        return {**event, draw(texts.filter(lambda key: key not in _SCHEDULED_KEYS | {"dryRun", "accounts"})): 1}
    if place == _BODY_PLACE:
        return _sqs(str(uuid.uuid4()), draw(hostile_sqs_bodies))
    return _place(place, draw(hostile_values))


# --- secrets ------------------------------------------------------------------------------------------


def _quoted(text: str) -> str:
    """`text` as a JSON string: a lone surrogate becomes the escape `\\udxxx`, exactly as a pasted secret holds it."""
    return json.dumps(text)


def _secret_with(api_key: str, field: str, raw_value: str) -> str:
    fields = {"apiKey": _quoted(api_key), field: raw_value}
    if field == "privateKeyPassphrase":
        fields["privateKey"] = _quoted(
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----"
        )
    elif field == "apiKey":
        fields["apiSecret"] = _quoted("x")
    return "{" + ", ".join(f"{_quoted(name)}: {value}" for name, value in fields.items()) + "}"


def hostile_secrets(api_key: str, canary: str) -> st.SearchStrategy[str]:
    """Secret values that must all be refused. `canary` is planted in every sensitive value so a test can
    prove no error, record or log line quotes any of it."""
    ascii_text = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30)
    fields = st.sampled_from(["apiSecret", "apiKey", "privateKeyPassphrase", "privateKey"])
    with_surrogate = st.builds(
        lambda before, surrogate, after: _quoted(canary + before + surrogate + after + canary),
        ascii_text,
        lone_surrogates,
        ascii_text,
    )
    with_non_ascii = st.builds(
        lambda before, char, size: _quoted((canary + before + char) * max(1, size // (len(canary) + len(before) + 1))),
        ascii_text,
        st.characters(min_codepoint=0x80, exclude_categories=["Cs"]),
        st.integers(1, MAX_SECRET_CHARS // 2),
    )
    return st.one_of(
        st.builds(lambda field, value: _secret_with(api_key, field, value), fields, with_surrogate),
        # (a passphrase may be any text: with it comes an unreadable PEM, so the secret is refused all the same)
        st.builds(
            lambda field, value: _secret_with(api_key, field, value),
            st.sampled_from(["apiSecret", "privateKeyPassphrase"]),
            with_non_ascii.filter(lambda value: len(value) <= MAX_SECRET_CHARS),
        ),
        st.builds(lambda field, digits: _secret_with(api_key, field, digits), fields, long_digits),
        st.builds(
            lambda field, depth: _secret_with(api_key, field, deep_json(depth)),
            fields,
            st.integers(1, MAX_SECRET_CHARS // 3),
        ),
        st.integers(1, MAX_SECRET_CHARS // 2).map(deep_json),
        st.integers(1, MAX_SECRET_CHARS // 12).map(lambda depth: deep_json(depth, '{"apiKey": ', "}")),
        # a pasted key as a field name
        st.builds(lambda suffix: _secret_with(api_key, canary + suffix, _quoted("x")), ascii_text.map(_safe_suffix)),
    )


def _safe_suffix(text: str) -> str:
    return "".join(ch for ch in text if ch not in '"\\')
