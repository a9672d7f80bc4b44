"""The render budget (delivery/render_budget.py): CPU seconds a minute per workspace, refilled evenly."""

from __future__ import annotations

import pytest
from tests.ticks import Ticks

from cartback.delivery.render_budget import RenderBudget, Spent


def test_render_budget_refuses_a_workspace_once_its_minute_is_spent_and_says_when_to_retry() -> None:
    ticks = Ticks()
    budget = RenderBudget(6, monotonic=ticks)  # 6 s a minute: 0.1 s a second, 1 s held at most
    for _ in range(4):
        budget.check("w1")
        budget.charge("w1", 0.25)
    with pytest.raises(Spent) as refused:
        budget.check("w1")
    assert refused.value.status_code == 429 and refused.value.retry_after == 1
    budget.check("w2")  # another workspace's budget is its own
    ticks.now += 1.0
    budget.check("w1")  # 0.1 s back
    budget.charge("w1", 0.25)  # now 0.15 s in debt: 1.5 s to wait, rounded up
    with pytest.raises(Spent) as refused:
        budget.check("w1")
    assert refused.value.retry_after == 2
    assert budget.refused == 2


def test_render_budget_holds_no_more_than_ten_seconds_of_refill() -> None:
    ticks = Ticks()
    budget = RenderBudget(6, monotonic=ticks)
    ticks.now += 3600
    budget.charge("w1", 1.0)
    with pytest.raises(Spent):
        budget.check("w1")


def test_render_budget_zero_lifts_it() -> None:
    budget = RenderBudget(0, monotonic=Ticks())
    budget.charge("w1", 1e6)
    budget.check("w1")
