"""supervisor.py's listening sockets (the processes themselves: tests/e2e/test_serve_processes.py)."""

from cartback import supervisor


def test_listening_sockets_share_one_port_even_when_the_port_is_chosen_by_the_system() -> None:
    sockets = supervisor._listen("127.0.0.1", 0, 3)
    try:
        ports = {s.getsockname()[1] for s in sockets}
        assert len(sockets) == 3 and len(ports) == 1 and ports != {0}
    finally:
        for s in sockets:
            s.close()
