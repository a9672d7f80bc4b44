"""The sign-in hash budget (core/signins.py): a burst after a quiet spell, then a steady share a second,
and a refusal, taking nothing, when a share is further away than the caller may wait."""

from __future__ import annotations

import pytest
from tests.ticks import Ticks

from cartback.core.signins import HashBudget


def test_hash_budget_a_burst_then_one_share_per_interval() -> None:
    ticks = Ticks()
    budget = HashBudget(2, burst=3, monotonic=ticks)
    assert [budget.reserve(wait=5) for _ in range(3)] == [0, 0, 0]
    # The burst is spent: each next share is half a second after the one before.
    assert [budget.reserve(wait=5) for _ in range(3)] == [0.5, 1.0, 1.5]
    ticks.now += 1.0
    assert budget.reserve(wait=5) == 1.0


def test_hash_budget_refuses_what_it_cannot_grant_within_the_wait_and_takes_nothing() -> None:
    ticks = Ticks()
    budget = HashBudget(1, burst=1, monotonic=ticks)
    assert budget.reserve(wait=0.5) == 0
    assert budget.reserve(wait=0.5) is None
    assert budget.reserve(wait=0.5) is None  # refusals took no share: the next is still 1 s away
    assert budget.reserve(wait=1) == 1.0


def test_hash_budget_refills_after_a_quiet_spell_but_never_beyond_its_burst() -> None:
    ticks = Ticks()
    budget = HashBudget(1, burst=2, monotonic=ticks)
    for _ in range(4):
        budget.reserve(wait=10)
    ticks.now += 3600
    assert [budget.reserve(wait=0) for _ in range(3)] == [0, 0, None]


@pytest.mark.parametrize("per_second", [0, 0.0])
def test_hash_budget_zero_lifts_it(per_second: float) -> None:
    budget = HashBudget(per_second, burst=1, monotonic=Ticks())
    assert all(budget.reserve(wait=0) == 0 for _ in range(1000))


def test_hash_budget_a_share_given_back_is_free_again() -> None:
    ticks = Ticks()
    budget = HashBudget(1, burst=2, monotonic=ticks)
    assert [budget.reserve(wait=5) for _ in range(2)] == [0, 0]
    budget.give_back()  # that attempt was refused as locked: its hash never ran
    assert budget.reserve(wait=5) == 0
    assert budget.reserve(wait=5) == 1.0
