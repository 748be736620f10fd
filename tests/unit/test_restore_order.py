"""streams.recovery.newest_wins: a restore keeps, per key, the state that has read furthest."""

from __future__ import annotations

from types import SimpleNamespace

from streams.detect import encode_state, record_offset
from streams.recovery import newest_wins


class FakeTable:
    """faust's Table as far as a restore uses it: the store, and applying a batch of changelog events."""

    name = "detect-household-state"

    def __init__(self, data=None) -> None:
        self.data = dict(data or {})

    def _to_key(self, key):
        return key

    def apply_changelog_batch(self, batch) -> None:
        for event in batch:
            if event.value is None:
                self.data.pop(event.key, None)
            else:
                self.data[event.key] = event.value


def event(key: bytes, offset: int | None, body: bytes = b"m"):
    return SimpleNamespace(key=key, value=None if offset is None else encode_state(offset, body))


def test_a_state_written_late_by_a_replaced_worker_does_not_undo_its_successors():
    table, skipped = FakeTable(), []
    newest_wins(table, record_offset, lambda: skipped.append(1))
    # the successor wrote offset 120 after the paused worker's 100; then the paused worker resumed and wrote 90
    table.apply_changelog_batch([event(b"h1", 100, b"a"), event(b"h2", 5), event(b"h1", 120, b"successor")])
    table.apply_changelog_batch([event(b"h1", 90, b"zombie"), event(b"h2", 6, b"next")])
    assert table.data[b"h1"] == encode_state(120, b"successor") and table.data[b"h2"] == encode_state(6, b"next")
    assert len(skipped) == 1


def test_within_one_batch_and_against_the_store_the_furthest_wins_and_equal_ones_keep_changelog_order():
    table = FakeTable({b"h1": encode_state(50, b"stored")})
    newest_wins(table, record_offset)
    table.apply_changelog_batch([event(b"h1", 40), event(b"h1", 50, b"feedback, same offset"), event(b"h1", 45)])
    assert table.data[b"h1"] == encode_state(50, b"feedback, same offset")


def test_deletions_and_records_without_a_readable_offset_are_applied_as_written():
    table = FakeTable({b"h1": encode_state(50, b"stored")})
    newest_wins(table, record_offset)
    table.apply_changelog_batch([SimpleNamespace(key=b"h1", value=b"?")])  # unreadable: the stage starts it afresh
    assert table.data[b"h1"] == b"?"
    table.apply_changelog_batch([event(b"h1", 3), event(b"h1", None)])
    assert b"h1" not in table.data
