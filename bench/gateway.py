"""How much time does Pulse's gateway add to a call? Measured side by side with a straight call
to the same upstream and with LiteLLM's proxy in front of it, all in one run.

    .venv/bin/python bench/gateway.py                      # ~6 minutes; first run also installs LiteLLM
    .venv/bin/python bench/gateway.py --quick              # ~2 minutes, fewer samples
    .venv/bin/python bench/gateway.py --servers uvicorn,granian   # Pulse under both ASGI servers

What runs, all on this machine (loopback only; every loop is bounded in count and time):
- upstream: a minimal OpenAI-compatible chat-completions server in this file (raw ASGI under
  uvicorn with uvloop + httptools, one process) that answers at once: a JSON completion with
  usage, or an SSE stream of a role chunk, `--chunks` one-word content chunks, a finish chunk,
  a usage chunk when `stream_options.include_usage` asks for it, and `[DONE]`. It does no
  per-request bookkeeping, so it adds as little as possible to both sides of the subtraction
  (Pulse's simulator stamps, logs and paces every chunk).
- straight: the load generator calls the upstream directly. This is the baseline.
- pulse: Pulse's gateway started the way production runs it (`config.asgi:application` under
  uvicorn with uvloop + httptools and one worker per core, as `manage.py run_gateway` does in
  docker-compose.yml; `--servers uvicorn,granian` adds granian, the measurement uvicorn was
  chosen by), against a throwaway
  PostgreSQL database and its own Redis key prefix, with a project, a gateway token, a
  connection to the upstream, a route, a project rate limit far above what the bench sends
  (so every call goes through the atomic limit step without being refused), and the call
  recording on: every call goes to the Redis stream and `manage.py gateway_consumer` writes it
  to PostgreSQL while the load runs. The response cache is off (a hit never reaches the
  upstream, which would flatter the gateway). `--hard-budget` adds a hard monthly budget of
  $1,000,000 on the project, so every call also reserves its maximum cost and settles it. At the
  end the bench checks that the database holds exactly one CostEvent per successful call
  through Pulse.
- litellm: LiteLLM's proxy (`litellm[proxy]`, LITELLM_VERSION below) installed by this script
  into its own virtualenv (var/bench/litellm-venv), one model pointing at the same upstream,
  the same number of uvicorn workers (with uvloop, and httptools installed so it gets the same
  HTTP parser), a master key (so it authenticates each call, as Pulse does), no database.
  Logging on: LiteLLM's defaults, i.e. its logging object and success handlers run for every
  call and compute the call's cost; with no database there is no spend log written anywhere,
  and no callbacks are configured. Uvicorn's access log is off for both proxies. So LiteLLM
  does less per call than Pulse (no rate limit, nothing persisted), which only makes the
  comparison harder for Pulse.

Load: one process, aiohttp on uvloop, N concurrent clients each sending its next request as
soon as the previous one finished (closed loop), at 1, 16 and 64 clients, non-streaming and
streaming. Targets are measured in interleaved rounds (the machine is shared; drift hits all
alike), after a warm-up per target. Per request:
- TTFT: request sent -> first SSE chunk carrying content (streaming), or -> response headers
  (non-streaming, where the whole body arrives with them);
- total: request sent -> last byte read and the answer checked (the full text must be right).
overhead = (through a proxy) - (straight), at the same percentile (p50, p95), same clients, same
mode. Requests/s = completed requests / wall time of the measured rounds.

The load generator, the upstream, the proxy, Redis, PostgreSQL and the consumer share this
machine's cores, so at 16 and 64 clients every number includes queueing for a CPU: read those
as what the whole box does, and compare the columns, not the absolute values.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
VAR = ROOT / "var" / "bench"

# The newest LiteLLM whose `[proxy]` extra installs from the package index this machine reaches:
# 1.108.10 and later pin litellm-enterprise / litellm-proxy-extras releases (and 1.110 a
# `litellm-proxy` package) that the index does not serve. Override with --litellm-version.
LITELLM_VERSION = "1.108.5"
LITELLM_VENV = VAR / "litellm-venv"
LITELLM_KEY = "sk-bench-litellm-master"

UPSTREAM_KEY = "sk-bench-upstream"
UPSTREAM_MODEL = "gpt-4o-mini"
BENCH_PROVIDER = "pulse-bench"  # calls are priced under it (a catalog price the bench adds)
ROUTE_MODEL = "bench-chat"  # what clients of either proxy ask for
PROMPT = "Say hello to the bench."

DB_NAME = "pulse_bench_gateway"
ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

CLIENT_LEVELS = (1, 16, 64)
TARGET_P50_1, TARGET_P95_1, TARGET_P50_64, TARGET_RATIO = 1.0, 3.0, 5.0, 5.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def words(chunks: int) -> list[str]:
    return [f"w{i} " for i in range(chunks)]


# ---------------------------------------------------------------------------------------------
# The upstream: answers at once, in OpenAI's format
# ---------------------------------------------------------------------------------------------


def upstream_app(chunks: int) -> Callable:
    """A raw ASGI app: every byte it can send is built once, here, so a request costs only the
    HTTP parsing, one orjson.loads and the writes."""
    import orjson

    created = int(time.time())
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": created, "model": UPSTREAM_MODEL}

    def sse(choices: list, usage: dict | None = None) -> bytes:
        payload = {**base, "choices": choices} | ({"usage": usage} if usage else {})
        return b"data: " + orjson.dumps(payload) + b"\n\n"

    usage = {"prompt_tokens": 14, "completion_tokens": chunks, "total_tokens": 14 + chunks}
    text = "".join(words(chunks))
    stream_head = sse([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
    stream_body = [sse([{"index": 0, "delta": {"content": w}, "finish_reason": None}]) for w in words(chunks)]
    stream_finish = sse([{"index": 0, "delta": {}, "finish_reason": "stop"}])
    stream_usage = sse([], usage)
    done = b"data: [DONE]\n\n"
    completion = orjson.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": created, "model": UPSTREAM_MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": usage,
    })
    models = orjson.dumps({"object": "list", "data": [{"id": UPSTREAM_MODEL, "object": "model", "owned_by": "bench"}]})
    sse_headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
    json_headers = [(b"content-type", b"application/json")]
    authorization = b"Bearer " + UPSTREAM_KEY.encode()

    async def reply(send: Callable, status: int, body: bytes) -> None:
        await send({"type": "http.response.start", "status": status, "headers": json_headers})
        await send({"type": "http.response.body", "body": body})

    async def app(scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return
        if dict(scope["headers"]).get(b"authorization") != authorization:
            await reply(send, 401, b'{"error":{"message":"bad key","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}')
            return
        if scope["path"] == "/v1/models":
            await reply(send, 200, models)
            return
        if scope["path"] != "/v1/chat/completions" or scope["method"] != "POST":
            await reply(send, 404, b'{"error":{"message":"not found","type":"invalid_request_error","param":null,"code":null}}')
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = orjson.loads(body)
        if not request.get("stream"):
            await reply(send, 200, completion)
            return
        await send({"type": "http.response.start", "status": 200, "headers": sse_headers})
        # One write per chunk, as a real provider's server flushes them.
        for chunk in (stream_head, *stream_body, stream_finish):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if (request.get("stream_options") or {}).get("include_usage"):
            await send({"type": "http.response.body", "body": stream_usage, "more_body": True})
        await send({"type": "http.response.body", "body": done})

    return app


def serve_upstream(port: int, chunks: int) -> None:
    import uvicorn

    uvicorn.run(upstream_app(chunks), host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                lifespan="off", access_log=False, log_level="warning")


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    base_url: str  # …/v1
    api_key: str
    model: str
    kind: str  # "straight" | "pulse" | "litellm"
    session: int = 0  # the server's session id (its leader's pid): whose CPU time is counted


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def session_cpu_seconds(session: int) -> float:
    """User + system CPU time of every live process in a session (a server and its workers).
    Less sensitive to other load on the machine than latency: what one call costs the proxy."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        # After the command: state ppid pgrp session … utime(12) stime(13) (0-based from state).
        if int(fields[3]) == session:
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


@dataclass
class Processes:
    started: list[tuple[str, subprocess.Popen]] = field(default_factory=list)

    def start(self, name: str, command: list[str], *, env: dict | None = None, log: Path | None = None) -> subprocess.Popen:
        out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115  (closed with the process)
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        self.started.append((name, process))
        return process

    def stop(self, process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    def stop_all(self) -> None:
        for _, process in reversed(self.started):
            self.stop(process)


def wait_http(url: str, process: subprocess.Popen, what: str, *, timeout: float = 120,
              headers: dict | None = None, log: Path | None = None) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise SystemExit(f"{what} exited with {process.returncode} before answering.\n{tail}")
        try:
            if httpx.get(url, headers=headers, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"{what} did not answer {url} within {timeout:g} s (log: {log})")


def ensure_litellm(version: str) -> Path:
    """LiteLLM's proxy in its own virtualenv: its dependency tree (pydantic, openai 2, fastapi…)
    never meets Pulse's. Reinstalled only when the version differs."""
    python = LITELLM_VENV / "bin" / "python"
    marker = LITELLM_VENV / f".installed-{version}"
    if not marker.exists():
        print(f"Installing litellm[proxy]=={version} into {LITELLM_VENV.relative_to(ROOT)} (once)…", flush=True)
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        f"litellm[proxy]=={version}", "httptools==0.9.0"], check=True)
        for old in LITELLM_VENV.glob(".installed-*"):
            old.unlink()
        marker.touch()
    return LITELLM_VENV / "bin" / "litellm"


def start_litellm(procs: Processes, args: argparse.Namespace, upstream_url: str) -> Target:
    litellm = ensure_litellm(args.litellm_version)
    port = free_port()
    config = VAR / "litellm-config.yaml"
    # JSON is YAML: one model, an OpenAI-compatible upstream, the master key, nothing else.
    config.write_text(json.dumps({
        "model_list": [{"model_name": ROUTE_MODEL, "litellm_params": {
            "model": f"openai/{UPSTREAM_MODEL}", "api_base": upstream_url, "api_key": UPSTREAM_KEY}}],
        "general_settings": {"master_key": LITELLM_KEY},
    }, indent=2))
    # Uvicorn's access log off (as for Pulse); LiteLLM's own loggers at their defaults.
    log_config = VAR / "litellm-logging.json"
    log_config.write_text(json.dumps({
        "version": 1, "disable_existing_loggers": False,
        "handlers": {"stderr": {"class": "logging.StreamHandler"}},
        "loggers": {"uvicorn": {"handlers": ["stderr"], "level": "INFO"},
                    "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False}},
    }))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DATABASE_URL", "REDIS", "LITELLM"))}
    # Offline: the bundled model cost map instead of a download at start.
    env |= {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "DISABLE_SCHEMA_UPDATE": "True"}
    log = VAR / "litellm.log"
    process = procs.start("litellm", [str(litellm), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
                                      "--num_workers", str(args.workers), "--log_config", str(log_config)],
                          env=env, log=log)
    wait_http(f"http://127.0.0.1:{port}/health/liveliness", process, "LiteLLM's proxy", log=log)
    return Target("litellm", f"http://127.0.0.1:{port}/v1", LITELLM_KEY, ROUTE_MODEL, "litellm", process.pid)


# ---------------------------------------------------------------------------------------------
# Pulse's gateway: a throwaway database, Redis prefix, project, token, route, limits, consumer
# ---------------------------------------------------------------------------------------------


class Pulse:
    def __init__(self, procs: Processes, args: argparse.Namespace, upstream_url: str) -> None:
        self.procs, self.args, self.upstream_url = procs, args, upstream_url
        self.prefix = f"pulse-bench-{uuid.uuid4().hex[:8]}:gw"
        self.token = ""
        self.project_id = 0
        self.consumer: subprocess.Popen | None = None

    @staticmethod
    def available() -> bool:
        return (ROOT / "gateway" / "asgi.py").exists()

    def database_url(self) -> str:
        return ADMIN_URL.rsplit("/", 1)[0] + f"/{DB_NAME}"

    def env(self) -> dict[str, str]:
        return {
            **os.environ, "DATABASE_URL": self.database_url(), "PULSE_ENV": "development", "DEBUG": "false",
            "DJANGO_SETTINGS_MODULE": "config.settings", "REDIS_URL": REDIS_URL, "GATEWAY_REDIS_URL": REDIS_URL,
            "GATEWAY_KEY_PREFIX": self.prefix, "LOG_LEVEL": "WARNING",
        }

    def prepare(self) -> None:
        import psycopg

        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {DB_NAME}")
        subprocess.run([PYTHON, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=self.env(), check=True)
        limit = 10**9  # far above anything the bench sends: every call is counted, none refused
        script = f"""
from datetime import timedelta
from decimal import Decimal
from django.utils import timezone
from accounts.models import ApiToken, Organization, User
from benchmarks.models import Model, Price, Provider
from gateway.models import Connection, GatewaySettings, RateLimit, Route, RouteUpstream
provider = Provider.objects.create(name={BENCH_PROVIDER!r}, kind="openai_compatible", base_url="http://127.0.0.1/",
    genai_prices_id={BENCH_PROVIDER!r})
Price.objects.create(model=Model.objects.create(provider=provider, name={UPSTREAM_MODEL!r}), source=Price.Source.ADMIN,
    valid_from=timezone.now() - timedelta(days=1), input_mtok=Decimal("0.15"), output_mtok=Decimal("0.60"))
user = User.objects.create_user(email="bench@example.com", password="bench-not-a-login")
org = Organization.create_for_owner(user, name="Bench", project_name="Gateway bench")
org.allow_private_egress = True  # the upstream is on 127.0.0.1
org.save()
project = org.projects.get()
token, raw = ApiToken.issue(project=project, name="bench", scopes=["gateway"], by=user)
connection = Connection.objects.create(organization=org, name="bench-upstream", kind="openai_compatible",
    provider={BENCH_PROVIDER!r}, base_url={self.upstream_url!r}, api_key={UPSTREAM_KEY!r}, created_by=user)
route = Route.objects.create(project=project, name={ROUTE_MODEL!r})
RouteUpstream.objects.create(route=route, connection=connection, model={UPSTREAM_MODEL!r})
settings_ = GatewaySettings.of(project)
settings_.cache_enabled = False
settings_.save()
RateLimit.objects.create(project=project, requests_per_minute={limit}, tokens_per_minute={limit},
    requests_per_day={limit}, tokens_per_day={limit})
if {self.args.hard_budget!r}:
    from alerts.models import Budget
    Budget.objects.create(organization=org, project=project, name="Bench hard budget", amount=Decimal("1000000"),
        period="month", enforcement="hard", created_by=user)
print(raw, project.id)
"""
        out = subprocess.run([PYTHON, "manage.py", "shell", "-c", script], cwd=ROOT, env=self.env(), check=True,
                             capture_output=True, text=True).stdout.split()
        self.token, self.project_id = out[-2], int(out[-1])

    def start_consumer(self) -> None:
        log = VAR / "pulse-consumer.log"
        self.consumer = self.procs.start("consumer", [PYTHON, "manage.py", "gateway_consumer"], env=self.env(), log=log)

    def server_command(self, server: str, port: int) -> list[str]:
        workers = str(self.args.workers)
        if server == "uvicorn":
            # What Procfile.dev and docker-compose.yml run: uvicorn, uvloop, httptools, no access log.
            return [PYTHON, "manage.py", "run_gateway", "--port", str(port), "--workers", workers]
        if server == "granian":
            if importlib.util.find_spec("granian") is None:
                raise SystemExit("granian is not installed (Pulse serves the gateway with uvicorn); for the "
                                 "comparison: .venv/bin/pip install granian==2.8.9")
            return [PYTHON, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
                    "--workers", workers, "--loop", "uvloop", "--http", "1", "--no-access-log",
                    "--respawn-failed-workers", "--log-level", "warning", *self.args.granian_args.split(),
                    "config.asgi:application"]
        raise SystemExit(f"unknown ASGI server {server!r} (uvicorn or granian)")

    def start_server(self, server: str) -> Target:
        port = free_port()
        log = VAR / f"pulse-{server}.log"
        process = self.procs.start(f"pulse-{server}", self.server_command(server, port), env=self.env(), log=log)
        wait_http(f"http://127.0.0.1:{port}/v1/models", process, f"Pulse's gateway under {server}", log=log,
                  headers={"Authorization": f"Bearer {self.token}"})
        return Target(f"pulse/{server}", f"http://127.0.0.1:{port}/v1", self.token, ROUTE_MODEL, "pulse", process.pid)

    def recorded(self) -> tuple[int, int]:
        """(CostEvents from the gateway, distinct idempotency keys) in the bench database."""
        import psycopg

        with psycopg.connect(self.database_url()) as conn:
            row = conn.execute(
                "SELECT count(*), count(DISTINCT idempotency_key) FROM costs_costevent WHERE project_id = %s",
                [self.project_id],
            ).fetchone()
        return row[0], row[1]

    def wait_recorded(self, expected: int, timeout: float = 120) -> tuple[int, int]:
        """Waits while the consumer drains the stream (and is alive), up to `timeout`."""
        deadline = time.monotonic() + timeout
        counts = self.recorded()
        while counts[0] < expected and time.monotonic() < deadline and self.consumer.poll() is None:
            time.sleep(0.5)
            counts = self.recorded()
        if self.consumer.poll() is not None:
            log = (VAR / "pulse-consumer.log").read_text(errors="replace")[-2000:]
            print(f"\nThe gateway consumer exited with {self.consumer.returncode}:\n{log}")
        return counts

    def cleanup(self, keep: bool) -> None:
        import psycopg
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        for batch in iter_batches(client.scan_iter(match=f"{self.prefix}:*", count=1000), 500):
            client.delete(*batch)
        if not keep:
            with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")


def iter_batches(items: Iterator, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# ---------------------------------------------------------------------------------------------
# Load
# ---------------------------------------------------------------------------------------------


@dataclass
class Cell:
    """Every measured request of one (target, mode, clients)."""

    ttft: list[float] = field(default_factory=list)  # ms
    total: list[float] = field(default_factory=list)  # ms
    self_reported: list[float] = field(default_factory=list)  # x-pulse-overhead-ms
    errors: int = 0
    elapsed: float = 0.0  # s, sum over the measured rounds
    cpu: float = 0.0  # s of CPU the target's server processes used during the measured rounds
    first_error: str = ""

    @property
    def requests(self) -> int:
        return len(self.total)

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed if self.elapsed else 0.0

    @property
    def cpu_ms_per_call(self) -> float:
        return self.cpu * 1000 / self.requests if self.requests else float("nan")


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(round(q * len(ordered) + 0.5)) - 1))]


class Load:
    def __init__(self, chunks: int) -> None:
        import orjson

        self.loads = orjson.loads
        self.text = "".join(words(chunks))
        self.dumps = orjson.dumps

    def body(self, target: Target, stream: bool) -> bytes:
        return self.dumps({"model": target.model, "messages": [{"role": "user", "content": PROMPT}],
                           "max_tokens": 64, "stream": stream})

    async def one(self, session, url: str, headers: dict, body: bytes, stream: bool, cell: Cell) -> None:
        loads = self.loads
        started = time.perf_counter()
        try:
            async with session.post(url, data=body, headers=headers) as response:
                first = None if stream else time.perf_counter()
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}: {(await response.read())[:300]!r}")
                if stream:
                    parts: list[str] = []
                    done = False
                    async for line in response.content:
                        if not line.startswith(b"data: "):
                            continue
                        data = line[6:].strip()
                        if data == b"[DONE]":
                            done = True
                            break
                        for choice in loads(data).get("choices") or ():
                            content = (choice.get("delta") or {}).get("content")
                            if content:
                                if first is None:
                                    first = time.perf_counter()
                                parts.append(content)
                    text = "".join(parts)
                    if not done:
                        raise RuntimeError("stream ended without [DONE]")
                else:
                    text = loads(await response.read())["choices"][0]["message"]["content"]
                finished = time.perf_counter()
                if text != self.text:
                    raise RuntimeError(f"wrong answer {text[:80]!r}")
                overhead = response.headers.get("x-pulse-overhead-ms")
        except Exception as exc:  # a failed call is counted, never timed
            cell.errors += 1
            cell.first_error = cell.first_error or f"{type(exc).__name__}: {exc}"[:300]
            return
        cell.ttft.append((first - started) * 1000)
        cell.total.append((finished - started) * 1000)
        if overhead is not None:
            cell.self_reported.append(float(overhead))

    async def run(self, session, target: Target, stream: bool, clients: int, requests: int, cell: Cell) -> None:
        """`requests` calls from `clients` closed-loop clients; the wall time goes to the cell."""
        url = f"{target.base_url}/chat/completions"
        headers = {"Authorization": f"Bearer {target.api_key}", "Content-Type": "application/json"}
        body = self.body(target, stream)
        remaining = requests

        async def client() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await self.one(session, url, headers, body, stream, cell)

        cpu = session_cpu_seconds(target.session) if target.session else 0.0
        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        cell.elapsed += time.perf_counter() - started
        if target.session:
            cell.cpu += session_cpu_seconds(target.session) - cpu


async def measure(targets: list[Target], args: argparse.Namespace) -> tuple[dict[tuple[str, bool, int], Cell], dict[str, Cell]]:
    """The measured cells, and per target the warm-up calls (counted for the recording check)."""
    import aiohttp

    load = Load(args.chunks)
    cells: dict[tuple[str, bool, int], Cell] = {}
    warmups = {target.name: Cell() for target in targets}
    order = list(targets)
    rng = random.Random(11)
    for clients in args.clients:
        per_round = max(clients, round(args.requests * (args.scale_64 if clients >= 64 else args.scale_16 if clients >= 16 else 1) / args.rounds))
        for stream in (False, True):
            label = f"{clients:>2} client{'s' if clients > 1 else ' '} {'streaming' if stream else 'non-streaming'}"
            print(f"  {label}: {args.rounds} rounds x {per_round} requests per target", flush=True)
            sessions = {}
            try:
                for target in targets:
                    connector = aiohttp.TCPConnector(limit=clients, limit_per_host=clients, force_close=False)
                    sessions[target.name] = aiohttp.ClientSession(
                        connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
                        timeout=aiohttp.ClientTimeout(total=120),
                    )
                    cells[(target.name, stream, clients)] = Cell()
                    # Warm-up: connections opened, caches filled, the proxy's pools at size.
                    warm = Cell()
                    await load.run(sessions[target.name], target, stream, clients, max(50, clients * 4), warm)
                    if not warm.requests:
                        raise SystemExit(f"{target.name} failed every warm-up call ({label}): {warm.first_error}\n"
                                         f"(its log is in {VAR.relative_to(ROOT)}/)")
                    warmups[target.name].total += warm.total
                    warmups[target.name].errors += warm.errors
                for _ in range(args.rounds):
                    rng.shuffle(order)
                    for target in order:
                        await load.run(sessions[target.name], target, stream, clients, per_round,
                                       cells[(target.name, stream, clients)])
            finally:
                for session in sessions.values():
                    await session.close()
    return cells, warmups


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def report(targets: list[Target], cells: dict[tuple[str, bool, int], Cell], args: argparse.Namespace) -> list[tuple[bool, str]]:
    straight = next(t for t in targets if t.kind == "straight")
    print()
    head = (f"{'clients':>7} {'mode':<6} {'target':<15} {'n':>6} {'err':>4} {'rps':>8} {'CPU/call':>8}  "
            f"{'TTFT p50':>8} {'p95':>7}  {'total p50':>9} {'p95':>7}  "
            f"{'overhead TTFT p50':>17} {'p95':>7}  {'total p50':>9} {'p95':>7}  {'self p50':>8}")
    print(head)
    print("-" * len(head))
    overhead: dict[tuple[str, bool, int], dict[str, float]] = {}
    for clients in args.clients:
        for stream in (False, True):
            base = cells[(straight.name, stream, clients)]
            for target in targets:
                cell = cells[(target.name, stream, clients)]
                row = {
                    "ttft50": pct(cell.ttft, 0.5) - pct(base.ttft, 0.5), "ttft95": pct(cell.ttft, 0.95) - pct(base.ttft, 0.95),
                    "total50": pct(cell.total, 0.5) - pct(base.total, 0.5), "total95": pct(cell.total, 0.95) - pct(base.total, 0.95),
                }
                overhead[(target.name, stream, clients)] = row
                over = ("" if target is straight else
                        f"{row['ttft50']:>17.2f} {row['ttft95']:>7.2f}  {row['total50']:>9.2f} {row['total95']:>7.2f}")
                self_p50 = f"{pct(cell.self_reported, 0.5):>8.2f}" if cell.self_reported else ""
                print(f"{clients:>7} {'stream' if stream else 'json':<6} {target.name:<15} {cell.requests:>6} {cell.errors:>4} "
                      f"{cell.rps:>8.0f} {cell.cpu_ms_per_call:>8.2f}  {pct(cell.ttft, 0.5):>8.2f} {pct(cell.ttft, 0.95):>7.2f}  "
                      f"{pct(cell.total, 0.5):>9.2f} {pct(cell.total, 0.95):>7.2f}  {over:<44}  {self_p50}")
            print()
    print("Times in ms. overhead = this target - straight, same percentile, clients and mode. "
          "self = Pulse's own x-pulse-overhead-ms.\nCPU/call = CPU ms the target's own server processes "
          "used per call (straight: the upstream's; a proxy: its own, without the upstream).")
    for (name, stream, clients), cell in sorted(cells.items()):
        if cell.errors:
            print(f"  {name} {'stream' if stream else 'json'} @{clients}: {cell.errors} failed calls, first: {cell.first_error}")

    verdicts: list[tuple[bool, str]] = []

    def verdict(ok: bool, text: str) -> None:
        verdicts.append((ok, text))

    litellm = next((t for t in targets if t.kind == "litellm"), None)
    for pulse in (t for t in targets if t.kind == "pulse"):
        for stream in (False, True):
            mode = "streaming" if stream else "non-streaming"
            if 1 in args.clients:
                for metric in ("ttft", "total"):
                    p50, p95 = overhead[(pulse.name, stream, 1)][f"{metric}50"], overhead[(pulse.name, stream, 1)][f"{metric}95"]
                    verdict(p50 <= TARGET_P50_1 and p95 <= TARGET_P95_1,
                            f"{pulse.name} overhead, 1 client, {mode} {metric.upper() if metric == 'ttft' else 'total'}: "
                            f"p50 {p50:.2f} ms (<= {TARGET_P50_1:g}), p95 {p95:.2f} ms (<= {TARGET_P95_1:g})")
            if 64 in args.clients:
                for metric in ("ttft", "total"):
                    p50 = overhead[(pulse.name, stream, 64)][f"{metric}50"]
                    verdict(p50 <= TARGET_P50_64, f"{pulse.name} overhead, 64 clients, {mode} "
                            f"{metric.upper() if metric == 'ttft' else 'total'}: p50 {p50:.2f} ms (<= {TARGET_P50_64:g})")
        if litellm is None:
            continue
        for clients in args.clients:
            for stream in (False, True):
                mode = "streaming" if stream else "non-streaming"
                # A Pulse overhead at or under 0.05 ms is within the noise: the ratio uses that floor.
                ours = max(overhead[(pulse.name, stream, clients)]["total50"], 0.05)
                theirs = overhead[(litellm.name, stream, clients)]["total50"]
                verdict(theirs / ours >= TARGET_RATIO, f"{pulse.name} vs litellm, {clients} client{'s' if clients > 1 else ''}, {mode}: "
                        f"overhead p50 {ours:.2f} vs {theirs:.2f} ms = {theirs / ours:.1f}x lower (>= {TARGET_RATIO:g}x)")
                ours_rps = cells[(pulse.name, stream, clients)].rps
                theirs_rps = cells[(litellm.name, stream, clients)].rps
                ratio = ours_rps / theirs_rps if theirs_rps else float("inf")
                verdict(ratio >= TARGET_RATIO, f"{pulse.name} vs litellm, {clients} client{'s' if clients > 1 else ''}, {mode}: "
                        f"{ours_rps:,.0f} vs {theirs_rps:,.0f} requests/s = {ratio:.1f}x (>= {TARGET_RATIO:g}x)")
    servers = [t for t in targets if t.kind == "pulse"]
    if len(servers) > 1:
        print("\nASGI servers side by side (Pulse's overhead p50, total time; requests/s; CPU ms per call):")
        for clients in args.clients:
            for stream in (False, True):
                parts = [f"{t.name.split('/')[-1]} {overhead[(t.name, stream, clients)]['total50']:.2f} ms, "
                         f"{cells[(t.name, stream, clients)].rps:,.0f}/s, {cells[(t.name, stream, clients)].cpu_ms_per_call:.2f}"
                         for t in servers]
                print(f"  {clients:>2} client{'s' if clients > 1 else ' '} {'stream' if stream else 'json  '}  " + "  |  ".join(parts))
    return verdicts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve-upstream", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--chunks", type=int, default=16, help="content chunks (one word each) per streamed answer")
    parser.add_argument("--clients", type=lambda s: [int(x) for x in s.split(",")], default=list(CLIENT_LEVELS),
                        help="concurrency levels, comma-separated (default 1,16,64)")
    parser.add_argument("--requests", type=int, default=600,
                        help="measured requests per target and mode at 1 client (x4 at 16, x6 at 64 clients)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds the requests are split into")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes of each proxy")
    parser.add_argument("--servers", default="uvicorn",
                        help="ASGI servers to run Pulse under, comma-separated: uvicorn (production), granian")
    parser.add_argument("--granian-args", default="", help="extra granian options, e.g. '--runtime-mode mt'")
    parser.add_argument("--hard-budget", action="store_true",
                        help="a hard budget (never reached) on Pulse's project: every call reserves and settles")
    parser.add_argument("--litellm-version", default=LITELLM_VERSION)
    parser.add_argument("--no-litellm", action="store_true", help="leave LiteLLM out (no install)")
    parser.add_argument("--no-pulse", action="store_true", help="leave Pulse's gateway out")
    parser.add_argument("--quick", action="store_true", help="a third of the samples")
    parser.add_argument("--keep", action="store_true", help="keep the bench database afterwards")
    args = parser.parse_args()
    if args.serve_upstream:
        serve_upstream(args.serve_upstream, args.chunks)
        return 0
    args.scale_16, args.scale_64 = 4, 6
    if args.quick:
        args.requests = max(args.rounds, args.requests // 3)

    import uvloop

    VAR.mkdir(parents=True, exist_ok=True)
    procs = Processes()
    pulse: Pulse | None = None
    try:
        upstream_port = free_port()
        upstream_process = procs.start("upstream", [PYTHON, __file__, "--serve-upstream", str(upstream_port),
                                                    "--chunks", str(args.chunks)], log=VAR / "upstream.log")
        upstream_url = f"http://127.0.0.1:{upstream_port}/v1"
        wait_http(f"{upstream_url}/models", upstream_process, "the bench upstream",
                  headers={"Authorization": f"Bearer {UPSTREAM_KEY}"})
        targets = [Target("straight", upstream_url, UPSTREAM_KEY, UPSTREAM_MODEL, "straight", upstream_process.pid)]
        if not args.no_pulse:
            if Pulse.available():
                pulse = Pulse(procs, args, upstream_url)
                pulse.prepare()
                pulse.start_consumer()
                for server in args.servers.split(","):
                    targets.append(pulse.start_server(server.strip()))
            else:
                print("Pulse's gateway is not in this checkout (no gateway/asgi.py): measuring the others only.")
        if not args.no_litellm:
            targets.append(start_litellm(procs, args, upstream_url))

        print(f"\nGateway bench: {os.cpu_count()} CPUs, {args.workers} workers per proxy, upstream answers at once "
              f"({args.chunks} chunks streamed), targets: {', '.join(t.name for t in targets)}")
        cells, warmups = uvloop.run(measure(targets, args))
        verdicts = report(targets, cells, args)

        if pulse is not None:
            ours = [t.name for t in targets if t.kind == "pulse"]
            # Warm-up calls are recorded too; the check is exact on every call that succeeded.
            sent = sum(cell.requests for (name, _, _), cell in cells.items() if name in ours)
            warm = sum(warmups[name].requests for name in ours)
            failed = sum(cell.errors for (name, _, _), cell in cells.items() if name in ours)
            failed += sum(warmups[name].errors for name in ours)
            expected = sent + warm
            events, distinct = pulse.wait_recorded(expected)
            verdicts.append((expected > 0 and events == expected and distinct == events,
                             f"recording: {events:,} CostEvents for {expected:,} successful calls through Pulse "
                             f"(incl. {warm:,} warm-up; {failed} failed), {distinct:,} distinct"))
        print("\nVerdict")
        for ok, text in verdicts:
            print(f"  {'PASS' if ok else 'MISS'}  {text}")
        return 0
    finally:
        procs.stop_all()
        if pulse is not None:
            pulse.cleanup(args.keep)


if __name__ == "__main__":
    sys.exit(main())
