"""IdentityBook: which label holds each exchange account, and what it tells the registry (an in-memory registry)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from auto_collector.errors import SharedAccountError
from auto_collector.identity import IdentityBook, account_window_key


class MemoryRegistry:
    def __init__(self, items: dict[str, str] | None = None, failing: bool = False) -> None:
        self.items = dict(items or {})
        self.failing = failing
        self.reads: list[list[str]] = []
        self.writes: list[tuple[str, str]] = []

    def read(self, labels: Sequence[str]) -> dict[str, str]:
        self.reads.append(list(labels))
        return {label: self.items[label] for label in labels if label in self.items}

    def register(self, label: str, window_key: str) -> bool:
        self.writes.append((label, window_key))
        if self.failing:
            return False
        self.items[label] = window_key
        return True


def test_the_window_is_the_accounts_and_labels_never_spell_one() -> None:
    assert account_window_key(123) == "uid:123"
    book = IdentityBook(["main"], MemoryRegistry())
    assert book.claim("main", 123) == "uid:123" == book.window_key("main")


@pytest.mark.parametrize("first", ["main", "alias"])
def test_the_label_configured_first_holds_the_account_whichever_claims_first(first: str) -> None:
    book = IdentityBook(["main", "alias"], MemoryRegistry())
    book.claim(first, 7)
    book.claim("main", 7)
    with pytest.raises(SharedAccountError, match=r"'main' and 'alias'.*uid 7"):
        book.claim("alias", 7)
    assert book.window_keys() == ["uid:7"]


def test_a_label_rotated_to_another_account_frees_the_old_one() -> None:
    book = IdentityBook(["a", "b"], MemoryRegistry())
    book.claim("b", 1)
    book.claim("b", 2)  # b's key now belongs to account 2
    assert book.claim("a", 1) == "uid:1"  # account 1 is no longer held by b
    assert book.window_keys() == ["uid:1", "uid:2"]


def test_the_registry_is_written_when_a_labels_window_changes_and_again_after_a_failed_write() -> None:
    registry = MemoryRegistry()
    book = IdentityBook(["a"], registry)
    book.claim("a", 1)
    book.claim("a", 1)
    book.claim("a", 2)
    assert registry.writes == [("a", "uid:1"), ("a", "uid:2")]
    failing = MemoryRegistry(failing=True)
    book = IdentityBook(["a"], failing)
    book.claim("a", 1)
    book.claim("a", 1)
    assert failing.writes == [("a", "uid:1"), ("a", "uid:1")]


def test_windows_of_reads_the_registry_only_for_labels_not_resolved_here() -> None:
    registry = MemoryRegistry({"a": "uid:1", "old": "uid:9"})
    book = IdentityBook(["a", "b", "c"], registry)
    book.claim("c", 3)
    assert book.windows_of(["a", "b", "c"]) == {"a": "uid:1", "c": "uid:3"}
    registry.items["a"] = "uid:4"  # a's key was rotated to another account by another container
    assert book.windows_of(["a", "b", "c"]) == {"a": "uid:4", "c": "uid:3"}
    assert registry.reads == [["a", "b"], ["a", "b"]]  # never for c, resolved here
    book.claim("a", 4)
    book.claim("b", 5)
    assert book.windows_of(["a", "b", "c"]) == {"a": "uid:4", "b": "uid:5", "c": "uid:3"}
    assert len(registry.reads) == 2  # all resolved: a warm collector reads nothing
    assert registry.writes == [("c", "uid:3"), ("b", "uid:5")]  # a's entry already said uid:4
