"""``streams.gather``'s pure parts: a peer's answer read (or refused with a reason), and the merge that answers a
list only when every partition of the table was answered exactly once."""

from __future__ import annotations

import pytest

from dispatch.desk import HouseholdDesk, with_roster
from schemas.households import Household
from schemas.users import User
from streams.gather import (CREDENTIALS_REFUSED, PeerAnswer, answer_of, caller_of, internal_answer, merge)
from streams.readiness import RECOVERING, Unavailable

B, C = "http://b:6066", "http://c:6066"
SUPERVISOR = User(user_id="s-north", role="supervisor", communities=("north",))


def desk(household_id: str, worker: str = "w-1") -> HouseholdDesk:
    return with_roster(HouseholdDesk(household_id=household_id),
                       Household(household_id=household_id, community="north", staff={"primary_worker": worker}))


def reason(call) -> str:
    with pytest.raises(Unavailable) as exc:
        call()
    return exc.value.reason


# -- a peer's answer -----------------------------------------------------------------------------------------
def test_a_peers_answer_round_trips_its_desks():
    body = internal_answer([3, 2], [desk("hh-2"), desk("hh-3")], SUPERVISOR)
    assert body["partitions"] == [2, 3] and body["caller"] == caller_of(SUPERVISOR)
    answer = answer_of(B, 200, body, SUPERVISOR)
    assert answer == PeerAnswer(partitions=(2, 3), desks=(desk("hh-2"), desk("hh-3")))


@pytest.mark.parametrize("status, body, expected", [
    (401, {"error": "authentication required"}, CREDENTIALS_REFUSED.format(url=B)),
    (503, {"error": RECOVERING}, f"several workers: worker {B} cannot answer now: {RECOVERING}"),
    (503, "not json", f"several workers: worker {B} cannot answer now: no reason given"),
    (404, {"error": "not found"}, f"several workers: worker {B} answered 404 to the list's gather"),
    (200, {"partitions": [2], "desks": []}, "with something else than desks"),  # no caller
    (200, {"partitions": ["2"], "caller": caller_of(SUPERVISOR), "desks": []}, "with something else than desks"),
    (200, {"partitions": [2], "caller": caller_of(SUPERVISOR), "desks": [{"household_id": 1}]},
     "with something else than desks"),
])
def test_a_peer_that_does_not_answer_desks_is_a_reason(status, body, expected):
    assert expected in reason(lambda: answer_of(B, status, body, SUPERVISOR))


def test_the_secret_key_is_named_when_a_peer_refuses_the_credentials():
    assert "ELDERWATCH_SECRET_KEY" in reason(lambda: answer_of(B, 401, {}, SUPERVISOR))


def test_a_peer_that_knows_the_caller_differently_is_refused():
    other = User(user_id="s-north", role="supervisor", communities=("north", "south"))
    body = internal_answer([2], [], other)
    assert "knows the caller differently" in reason(lambda: answer_of(B, 200, body, SUPERVISOR))


# -- the merge --------------------------------------------------------------------------------------------------
def peer(partitions, *households) -> PeerAnswer:
    return PeerAnswer(partitions=tuple(partitions), desks=tuple(desk(h) for h in households))


def test_every_partition_once_is_one_list_by_household():
    merged = merge(4, [0, 1], [desk("hh-5"), desk("hh-1")], {B: [2], C: [3]},
                   {B: peer([2], "hh-2"), C: peer([3], "hh-3", "hh-0")})
    assert [d.household_id for d in merged] == ["hh-0", "hh-1", "hh-2", "hh-3", "hh-5"]


def test_a_peer_reporting_fewer_partitions_than_the_assignor_said_is_a_rebalance():
    assert reason(lambda: merge(4, [0, 1], [], {B: [2, 3]}, {B: peer([2])})) == \
        f"several workers: worker {B} no longer holds partitions [3] (rebalancing)"


def test_a_partition_answered_twice_is_a_rebalance():
    # B took partition 1 in a new assignment that this worker has not seen yet
    assert "partitions [1] were answered by two workers" in reason(
        lambda: merge(4, [0, 1], [], {B: [2, 3]}, {B: peer([1, 2, 3])}))
    assert "partitions [3] were answered by two workers" in reason(
        lambda: merge(4, [0, 1], [], {B: [2, 3], C: [3]}, {B: peer([2, 3]), C: peer([3])}))


def test_a_partition_nobody_answered_is_never_left_out_silently():
    assert reason(lambda: merge(4, [0, 1], [desk("hh-1")], {B: [2]}, {B: peer([2], "hh-2")})) == \
        "several workers: partitions [3] have no worker now (rebalancing)"
    assert "partitions [2, 3] have no worker" in reason(lambda: merge(4, [0, 1], [], {}, {}))
    assert "partitions [4] are not the table's" in reason(
        lambda: merge(4, [0, 1], [], {B: [2, 3]}, {B: peer([2, 3, 4])}))


def test_a_peer_without_an_answer_is_refused():
    assert "did not answer" in reason(lambda: merge(4, [0, 1], [], {B: [2, 3]}, {}))


def test_one_household_from_two_workers_is_kept_once_if_the_same_and_refused_if_not():
    merged = merge(2, [0], [desk("hh-1")], {B: [1]}, {B: peer([1], "hh-1", "hh-2")})
    assert [d.household_id for d in merged] == ["hh-1", "hh-2"]
    changed = PeerAnswer(partitions=(1,), desks=(desk("hh-1", worker="w-2"),))
    assert "answered one household differently" in reason(lambda: merge(2, [0], [desk("hh-1")], {B: [1]},
                                                                        {B: changed}))
