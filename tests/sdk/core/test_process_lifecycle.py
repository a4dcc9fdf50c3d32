"""The SDK across a process's life: fork() (gunicorn and Celery workers fork after the
application imported and maybe used the SDK) and the interpreter's exit (a script that tracks
and ends without flush())."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict

from pulse_sdk import Client, Stats

from tests.gateway.conftest import free_port

EXIT_SCRIPT = """
import logging, sys
import pulse_sdk

logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
pulse_sdk.init(flush_interval=3600, shutdown_timeout=float(sys.argv[1]))
for n in range(2500):
    pulse_sdk.track(provider="openai", model="gpt-4o-mini", input_tokens=n, tags={"run": "exit"})
print(pulse_sdk.get_client().stats().sent)
"""


def track(client: Client, who: str, count: int) -> list[str]:
    return [client.track(provider="openai", model="gpt-4o-mini", input_tokens=n, tags={"who": who})
            for n in range(count)]


def test_after_fork_parent_and_child_each_send_their_own_events_once(pulse):
    client = Client(api_key=pulse.ingest_key, base_url=pulse.url, flush_interval=60)
    sent_before = track(client, "parent", 10)
    assert client.flush(10)  # the sender runs and holds a connection
    queued_at_fork = track(client, "parent", 20)  # waiting in the parent's queue when it forks
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report over the pipe, never return into pytest
        code = 1
        try:
            os.close(read_end)
            at_start = client.stats()
            keys = track(client, "child", 30)
            flushed = client.flush(20)
            report = {"at_start": asdict(at_start), "after": asdict(client.stats()), "flushed": flushed, "keys": keys}
            os.write(write_end, json.dumps(report).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    sent_after = track(client, "parent", 5)
    assert client.flush(20)
    with os.fdopen(read_end) as pipe:
        child = json.loads(pipe.read())
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0

    # The child started empty (the parent's 20 waiting events stayed the parent's) and sent its own.
    assert child["flushed"] is True
    assert Stats(**child["at_start"]) == Stats()
    assert Stats(**child["after"]) == Stats(tracked=30, sent=30, batches=1)
    parent_keys = sent_before + queued_at_fork + sent_after
    assert client.stats() == Stats(tracked=35, sent=35, batches=2)  # 10, then 20 + 5
    stored = {}
    for key, who in pulse.events().values_list("idempotency_key", "tags__who"):
        assert key not in stored
        stored[key] = who
    assert len(stored) == 65
    assert {key for key, who in stored.items() if who == "parent"} == set(parent_keys)
    assert {key for key, who in stored.items() if who == "child"} == set(child["keys"])
    client.close()


def run_script(pulse_url: str, api_key: str, shutdown_timeout: float, tmp_path) -> subprocess.CompletedProcess:
    script = tmp_path / "track_and_exit.py"
    script.write_text(EXIT_SCRIPT)
    env = {**os.environ, "PULSE_API_KEY": api_key, "PULSE_BASE_URL": pulse_url}
    return subprocess.run([sys.executable, str(script), str(shutdown_timeout)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


def test_events_still_queued_at_exit_are_sent_before_the_interpreter_ends(pulse, tmp_path):
    result = run_script(pulse.url, pulse.ingest_key, 10.0, tmp_path)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) < 2500  # the script ended with events still waiting
    assert pulse.events().filter(tags__run="exit").count() == 2500
    assert len(set(pulse.events().values_list("idempotency_key", flat=True))) == 2500
    assert "pulse_sdk" not in result.stderr  # nothing to complain about


def test_at_exit_an_unreachable_pulse_costs_at_most_the_shutdown_timeout_and_is_reported(tmp_path):
    started = time.monotonic()
    result = run_script(f"http://127.0.0.1:{free_port()}", "pk_live_whatever", 0.5, tmp_path)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 15  # the interpreter's start and imports included
    lost = [line for line in result.stderr.splitlines() if "not delivered" in line]
    assert len(lost) == 1
    assert lost[0].startswith("pulse_sdk WARNING Pulse: 2500 events were not delivered before the interpreter exited")


def _track_in_a_worker(client: Client) -> None:
    track(client, "worker", 25)  # and return: multiprocessing ends the child with os._exit()


def test_a_multiprocessing_worker_sends_what_it_tracked_before_it_ends(pulse):
    import multiprocessing

    client = Client(api_key=pulse.ingest_key, base_url=pulse.url, flush_interval=60)
    track(client, "parent", 5)
    worker = multiprocessing.get_context("fork").Process(target=_track_in_a_worker, args=(client,))
    worker.start()
    worker.join(timeout=30)
    assert worker.exitcode == 0
    assert pulse.events().filter(tags__who="worker").count() == 25
    assert client.flush(10) and pulse.events().filter(tags__who="parent").count() == 5
    client.close()
