"""`python -m bert_trainer launch`: the launcher waits for its workers' sshd, then becomes mpirun."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from bert_trainer.tasks.launch import EXIT_WORKERS_UNREACHABLE, hosts, wait_for


def test_hosts_are_read_from_open_mpis_hostfile() -> None:
    text = "j-phase1-worker-0.j-phase1.ml.svc slots=8\n# a comment\n\nj-phase1-worker-1.j-phase1.ml.svc slots=8 # two\n"
    assert hosts(text) == ["j-phase1-worker-0.j-phase1.ml.svc", "j-phase1-worker-1.j-phase1.ml.svc"]


def test_waiting_polls_until_every_host_answers_or_the_deadline() -> None:
    answered: dict[str, int] = {"a": 0, "b": 2}  # b answers at its third probe
    probes: list[str] = []
    now = [0.0]

    def probe(host: str, port: int) -> bool:
        probes.append(host)
        answered[host] -= 1
        return answered[host] < 0

    assert wait_for(["a", "b"], 2222, 60, probe=probe, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s)) == []
    assert probes == ["a", "b", "b", "b"]  # an answered host is not probed again
    never = wait_for(["c"], 2222, 5, probe=lambda h, p: False, clock=lambda: now[0],
                     sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert never == ["c"]


def launch(tmp_path: Path, port: int, *command: str, timeout: str = "20") -> subprocess.CompletedProcess[str]:
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("127.0.0.1 slots=1\nlocalhost slots=1\n")
    return subprocess.run([sys.executable, "-m", "bert_trainer", "launch", "--hostfile", str(hostfile), "--ssh_port",
                           str(port), "--timeout_seconds", timeout, "--", *command],
                          capture_output=True, text=True, timeout=60)


def test_it_execs_the_command_once_the_workers_listen_and_passes_its_exit_status(tmp_path: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        done = launch(tmp_path, port, sys.executable, "-c", "import sys; print('mpirun ran'); sys.exit(5)")
    assert done.returncode == 5 and done.stdout.strip() == "mpirun ran", done.stderr


def test_workers_that_never_listen_end_it_with_its_own_status_and_a_message(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, not listening: connections are refused
        done = launch(tmp_path, port, "true", timeout="1")
    assert done.returncode == EXIT_WORKERS_UNREACHABLE
    assert f"did not accept connections on port {port} within 1 s: 127.0.0.1, localhost" in done.stderr


def test_a_launch_without_a_command_is_a_usage_error(run_cli) -> None:
    done = run_cli(["launch", "--ssh_port", "2222"])  # refused before it would exec: no process needed
    assert done.returncode == 2 and "command: missing" in done.stderr
