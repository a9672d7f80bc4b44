"""cartback.processes: work a tenant can make expensive runs in spawned processes at a low CPU priority,
outside the server's interpreter lock; renders and password hashes use it."""

from __future__ import annotations

import os
import signal

import pytest

from cartback import processes
from cartback.core import signins
from cartback.delivery import render


def _niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, 0)


# What the processes run must be importable there (a spawned interpreter): os's own functions.
NICENESS = (os.getpriority, os.PRIO_PROCESS, 0)


@pytest.fixture
def pool():
    made = processes.Pool("test", niceness=5, size=1)
    yield made
    made.shutdown()


def test_processes_run_elsewhere_at_a_lower_priority(pool) -> None:
    assert pool.run(os.getpid) != os.getpid()
    assert pool.run(*NICENESS) == min(19, _niceness() + 5)


def test_processes_without_processes_run_here() -> None:
    assert processes.Pool("test", niceness=5, size=0).run(os.getpid) == os.getpid()


def test_processes_a_dead_process_is_replaced_and_the_work_run_again(pool) -> None:
    first = pool.run(os.getpid)
    os.kill(first, signal.SIGKILL)
    assert pool.run(os.getpid) not in (first, os.getpid())


def test_processes_renders_and_hashes_go_to_their_pools() -> None:
    """The server's pools: renders at nice 10, password hashes at nice 19 (docs/security.md)."""
    render.PROCESSES.resize(1)
    signins.HashGate(1, 5)
    assert render._elsewhere(os.getpid) != os.getpid()
    assert render._elsewhere(*NICENESS) == min(19, _niceness() + 10)
    assert signins.HASHES.run(*NICENESS) == 19
    rendered = render.render_email({"subject": "Hi {{ name }}", "html": "<p>{{ name }}</p>"}, {"name": "Jo"})
    assert (rendered.subject, rendered.text) == ("Hi Jo", "Jo")
    with pytest.raises(render.RenderError, match="loop iterations"):
        render.check("html", "{% for i in (1..200) %}{% for j in (1..200) %}x{% endfor %}{% endfor %}")
