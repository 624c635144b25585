import pytest

from auto_collector.errors import ECHO_LIMIT, MAX_MESSAGE_CHARS, InvalidEventError, UnexpectedError, echo


def deep_list(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "value",
    ["x" * 500_000, 10**5_000, -(10**5_000), deep_list(100_000), {"k" * 10_000: ["v" * 10_000] * 1_000}, "\ud800" * 9],
    ids=["500 KB string", "5000-digit number", "negative", "100k-deep list", "wide and long", "lone surrogates"],
)
def test_echo_is_bounded_whatever_it_is_given(value: object) -> None:
    text = echo(value)
    assert len(text) <= ECHO_LIMIT + 12
    text.encode()  # a lone surrogate is shown as its escape, so the message can be stored and logged


def test_echo_shows_short_values_as_repr() -> None:
    assert echo("dry") == "'dry'" and echo(1.5) == "1.5" and echo(["a", 1]) == "['a', 1]"
    assert echo(10**5_000) == f"<{(10**5_000).bit_length()}-bit integer>"


def test_every_collector_error_message_is_bounded() -> None:
    text = str(InvalidEventError("x" * 1_000_000))
    assert len(text) <= MAX_MESSAGE_CHARS + 10 and text.endswith("...(cut)")


def test_unexpected_error_names_the_type_and_place_never_the_text() -> None:
    secret = "s3cr3t-\ud800"
    try:
        secret.encode()
    except UnicodeEncodeError as error:
        unexpected = UnexpectedError(error)
    text = str(unexpected)
    assert text.startswith("unexpected UnicodeEncodeError at test_errors.py:")
    assert "s3cr3t" not in text and "\ud800" not in text and "position" not in text
    assert unexpected.kind == "unexpected"
