"""What `pulse_sdk.instrument()` adds to an OpenAI call in the caller's thread: a plain
`chat.completions.create` and a 16-chunk stream read to its end, instrumented versus not, against
Pulse's simulated provider (in its own process, so it does not share the client's GIL).

    .venv/bin/python bench/sdk_instrumented.py                # ~30 s
    .venv/bin/python bench/sdk_instrumented.py --samples 500  # quicker, noisier

Two measures per shape, both from the same interleaved run (plain, instrumented, plain...):

- **in the call** (the verdict): each call's wall time minus the time spent inside the SDK's own
  `post()` and its stream iterator (a timing shim sits under Pulse's wrapper, on both clients), so
  the network and the simulator cancel out of each sample: Pulse's wrapper, the per-chunk reading,
  the record handed to `track()`. p50/p99 of (instrumented - the plain call next to it).
- **end to end**: p50/p99 of each client's whole calls, and their difference. Noisier (loopback
  and the simulator's jitter are in both), but it also holds what the shim cannot separate: the
  usage chunk Pulse asks for and hides (its bytes read and decoded by the SDK, its JSON by Pulse)
  and the HTTP response hook.
- **CPU time**: the same calls' thread CPU time (no waiting, no time taken by other processes),
  p50 of each and their difference: the steadiest view of the whole cost on a busy machine.

`track()` is a stand-in that keeps the event (a list append): the cost of the real
`pulse_sdk.Client.track()` is bench/sdk.py's to measure. Target (issue 12, this bench's own):
p50 < 50 µs added per call, for the plain call and for the whole stream.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pulse_sdk  # noqa: E402
from pulse_sdk.instrument import calls  # noqa: E402

TARGET_P50_US = 50.0
MODEL = "bench-instant"
PROFILES = {MODEL: {"ttft_ms": 0, "inter_token_ms": 0, "output_tokens": 16}}  # answers at once, 16 chunks
MESSAGES = [{"role": "user", "content": "Say hello to the bench."}]


# --------------------------------------------------------------------------- the simulator


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SimulatorProcess:
    """`manage.py simulate_provider` in its own process, with the bench's profile."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="pulse-bench-sdk-")
        self.profiles_path = Path(self._dir.name) / "profiles.json"
        self.profiles_path.write_text(json.dumps(PROFILES))
        self.output_path = Path(self._dir.name) / "simulator.out"
        self.process: subprocess.Popen | None = None
        self.root = ""

    def __enter__(self) -> SimulatorProcess:
        port = free_port()
        self.root = f"http://127.0.0.1:{port}"
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
        with self.output_path.open("wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "simulate_provider", "--port", str(port),
                 "--profiles", str(self.profiles_path)],
                cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                httpx.get(f"{self.root}/_sim/requests", timeout=1).raise_for_status()
                return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError(f"the simulator did not start:\n{self.output_path.read_text()}")

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._dir.cleanup()

    @property
    def openai_base_url(self) -> str:
        return f"{self.root}/openai/v1"


# --------------------------------------------------------------------------- measuring


class Kept:
    """`pulse=` for the instrumented client: keeps each event, as a queue would."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def track(self, **fields: Any) -> str:
        self.events.append(fields)
        return "key"


class Inner:
    """Seconds spent inside the SDK's own post() and stream iterator, for the current call."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def shim(self, post: Callable[..., Any]) -> Callable[..., Any]:
        def timed_post(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            result = post(*args, **kwargs)
            self.seconds += time.perf_counter() - started
            if kwargs.get("stream"):
                result._iterator = self._timed(result._iterator)
            return result

        return timed_post

    def _timed(self, items: Iterator[Any]) -> Iterator[Any]:
        following = items.__next__
        while True:
            started = time.perf_counter()
            try:
                item = following()
            except StopIteration:
                self.seconds += time.perf_counter() - started
                return
            self.seconds += time.perf_counter() - started
            yield item


def client(base_url: str, inner: Inner, pulse: Kept | None) -> openai.OpenAI:
    made = openai.OpenAI(base_url=base_url, api_key="sk-bench", max_retries=0, timeout=30.0)
    made.post = inner.shim(made.post)  # before any resource exists: they all take this post()
    if pulse is not None:
        pulse_sdk.instrument(made, pulse=pulse)  # wraps the shim: the shim times only the SDK
    return made


def one_call(made: openai.OpenAI, inner: Inner, streamed: bool) -> tuple[float, float, float]:
    """(whole call, outside the SDK's post and iterator, the thread's CPU time) in seconds."""
    inner.seconds = 0.0
    cpu = time.thread_time()
    started = time.perf_counter()
    if streamed:
        for _chunk in made.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True):
            pass
    else:
        made.chat.completions.create(model=MODEL, messages=MESSAGES)
    total = time.perf_counter() - started
    return total, total - inner.seconds, time.thread_time() - cpu


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(samples: int = 2000, *, base_url: str | None = None) -> dict[str, dict[str, float]]:
    """{"create"|"stream": {added_p50_us, added_p99_us, plain_p50_us, plain_p99_us,
    instrumented_p50_us, instrumented_p99_us, end_to_end_added_p50_us}} over `samples` calls of
    each client. Starts the simulator unless `base_url` (an OpenAI-compatible root serving
    bench-instant) is given."""
    if base_url is None:
        with SimulatorProcess() as sim:
            return measure(samples, base_url=sim.openai_base_url)
    results = {}
    kept = Kept()
    for shape, streamed in (("create", False), ("stream", True)):
        inner_plain, inner_instrumented = Inner(), Inner()
        with client(base_url, inner_plain, None) as plain, client(base_url, inner_instrumented, kept) as instrumented:
            for _ in range(max(samples // 10, 20)):  # warm up: connections, imports, caches
                one_call(plain, inner_plain, streamed)
                one_call(instrumented, inner_instrumented, streamed)
            kept.events.clear()
            plain_totals, instrumented_totals, added, plain_cpu, instrumented_cpu = [], [], [], [], []
            gc.collect()
            gc.disable()  # a collection landing in one sample and not its pair is noise, not cost
            try:
                for _ in range(samples):
                    plain_total, plain_outside, plain_seconds = one_call(plain, inner_plain, streamed)
                    instrumented_total, instrumented_outside, instrumented_seconds = one_call(
                        instrumented, inner_instrumented, streamed)
                    plain_totals.append(plain_total)
                    instrumented_totals.append(instrumented_total)
                    added.append(instrumented_outside - plain_outside)
                    plain_cpu.append(plain_seconds)
                    instrumented_cpu.append(instrumented_seconds)
            finally:
                gc.enable()
        assert len(kept.events) == samples, f"{len(kept.events)} events for {samples} calls"
        assert all(event["token_count_source"] == "usage" for event in kept.events)
        kept.events.clear()
        us = 1e6
        results[shape] = {
            "added_p50_us": percentile(added, 0.50) * us, "added_p99_us": percentile(added, 0.99) * us,
            "plain_p50_us": percentile(plain_totals, 0.50) * us, "plain_p99_us": percentile(plain_totals, 0.99) * us,
            "instrumented_p50_us": percentile(instrumented_totals, 0.50) * us,
            "instrumented_p99_us": percentile(instrumented_totals, 0.99) * us,
        }
        results[shape]["end_to_end_added_p50_us"] = (
            results[shape]["instrumented_p50_us"] - results[shape]["plain_p50_us"])
        results[shape]["cpu_plain_p50_us"] = percentile(plain_cpu, 0.50) * us
        results[shape]["cpu_instrumented_p50_us"] = percentile(instrumented_cpu, 0.50) * us
        results[shape]["cpu_added_p50_us"] = (
            results[shape]["cpu_instrumented_p50_us"] - results[shape]["cpu_plain_p50_us"])
    results["hook"] = {"per_response_ns": hook_cost_ns()}
    return results


def hook_cost_ns(rounds: int = 200_000) -> float:
    """The response hook's cost per response, during an instrumented call (it runs inside the
    SDK's send, so the shim counts it as the SDK's)."""
    response = httpx.Response(200, headers={"content-type": "application/json"})
    hook = calls.response_hook

    class Call:
        via_gateway = False
        status_code = None

    token = calls.in_flight.set(Call())
    try:
        started = time.perf_counter()
        for _ in range(rounds):
            hook(response)
        return (time.perf_counter() - started) / rounds * 1e9
    finally:
        calls.in_flight.reset(token)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2000, help="calls per client and shape (default 2000)")
    args = parser.parse_args()
    results = measure(args.samples)
    print(f"pulse_sdk.instrument() overhead, {args.samples} interleaved calls per client, "
          f"model {MODEL} (16 chunks, no delay), simulator in its own process")
    for shape, label in (("create", "chat.completions.create"), ("stream", "stream=True, read to the end")):
        row = results[shape]
        print(f"\n{label}")
        print(f"  in the call:  added p50 {row['added_p50_us']:7.1f} µs   p99 {row['added_p99_us']:7.1f} µs")
        print(f"  end to end:   plain p50 {row['plain_p50_us']:7.1f} µs   p99 {row['plain_p99_us']:7.1f} µs")
        print(f"                instr p50 {row['instrumented_p50_us']:7.1f} µs   p99 {row['instrumented_p99_us']:7.1f} µs"
              f"   (p50 difference {row['end_to_end_added_p50_us']:+.1f} µs)")
        print(f"  CPU time:     plain p50 {row['cpu_plain_p50_us']:7.1f} µs   instr p50 {row['cpu_instrumented_p50_us']:7.1f} µs"
              f"   (p50 difference {row['cpu_added_p50_us']:+.1f} µs)")
    print(f"\nresponse hook: {results['hook']['per_response_ns']:.0f} ns per response")
    print("\nVerdict (target: p50 < 50 µs added per call, in the call)")
    for shape in ("create", "stream"):
        added = results[shape]["added_p50_us"]
        ok = added < TARGET_P50_US
        print(f"  {'PASS' if ok else 'MISS'}  {shape}: {added:.1f} µs")


if __name__ == "__main__":
    main()
