"""How many events per second does Pulse's batch ingestion endpoint sustain into PostgreSQL?

Starts gunicorn (the production server, DEBUG off) against a throwaway PostgreSQL database,
sends batches of 1,000 events over HTTP from several concurrent clients for a fixed time, then
checks the database holds exactly the accepted events (nothing lost, nothing doubled) and that
the rollups count each once. For scale it also measures, on the same machine in the same run,
PostgreSQL `COPY` of the same rows into the same table (the physical ceiling of any ingestion).

    .venv/bin/python bench/ingest.py                 # 30 s of load, 4 clients, 3 web workers
    .venv/bin/python bench/ingest.py --seconds 10 --clients 2 --workers 2

The load generator runs on the same machine as gunicorn and PostgreSQL, so all three share its
CPUs: on a 2-core machine the numbers are a floor, not what a separate client would see.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
DB_NAME = "pulse_bench_ingest"
ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
BATCH = 1000
MODELS = [("openai", "gpt-4o-mini"), ("openai", "gpt-4o"), ("anthropic", "claude-3-5-haiku"),
          ("anthropic", "claude-3-5-sonnet"), ("google-gla", "gemini-1.5-flash"), ("acme", "in-house-model")]
FEATURES = ["search", "chat", "summaries", "tagging", "support"]


def database_url() -> str:
    return ADMIN_URL.rsplit("/", 1)[0] + f"/{DB_NAME}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def bench_env() -> dict[str, str]:
    return {
        **os.environ, "DATABASE_URL": database_url(), "PULSE_ENV": "development", "DEBUG": "false",
        "INGEST_THROTTLE_RATE": "1000000/min", "DJANGO_SETTINGS_MODULE": "config.settings",
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
    }


def reset_database() -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")


def drop_database() -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")


def prepare() -> tuple[str, int]:
    """Migrate, create a project and an ingest token; returns (raw token, project id)."""
    subprocess.run([PYTHON, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=bench_env(), check=True)
    script = (
        "from accounts.models import User, Organization, ApiToken\n"
        "u = User.objects.create_user(email='bench@example.com', password='x')\n"
        "o = Organization.create_for_owner(u, name='Bench', project_name='Ingest')\n"
        "p = o.projects.get()\n"
        "t, raw = ApiToken.issue(project=p, name='bench', scopes=['ingest'], by=u)\n"
        "print(raw, p.id)\n"
    )
    out = subprocess.run([PYTHON, "manage.py", "shell", "-c", script], cwd=ROOT, env=bench_env(), check=True,
                         capture_output=True, text=True).stdout.split()
    return out[-2], int(out[-1])


def make_batch(rng: random.Random, now: datetime, run: str, number: int, spread_s: float) -> bytes:
    events = []
    for i in range(BATCH):
        provider, model = rng.choice(MODELS)
        input_tokens = rng.randint(200, 8000)
        events.append({
            "provider": provider, "model": model, "input_tokens": input_tokens,
            "output_tokens": rng.randint(20, 800), "cached_tokens": rng.choice([0, 0, input_tokens // 2]),
            "latency_ms": round(rng.uniform(200, 4000), 1), "status_code": rng.choice([200] * 30 + [429, 500]),
            "timestamp": (now - timedelta(seconds=rng.uniform(0, spread_s))).isoformat(),
            "tags": {"feature": rng.choice(FEATURES), "environment": "production"},
            "idempotency_key": f"{run}-{number}-{i}",
        })
    return json.dumps({"events": events}).encode()


async def load(port: int, token: str, seconds: float, clients: int, spread_s: float) -> dict:
    run = uuid.uuid4().hex[:8]
    rng = random.Random(7)
    now = datetime.now(UTC)
    # Bodies are made before the clock starts: the bench measures the server, not json.dumps.
    bodies = [make_batch(rng, now, run, n, spread_s) for n in range(clients * 4)]
    sent = {"accepted": 0, "duplicates": 0, "rejected": 0, "requests": 0, "errors": 0}
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    counter = 0

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal counter
        while time.perf_counter() < deadline:
            counter += 1
            # A fresh idempotency prefix per request: every batch is new data.
            body = bodies[counter % len(bodies)].replace(f'"{run}-'.encode(), f'"{run}{counter}-'.encode())
            started = time.perf_counter()
            response = await client.post(
                f"http://127.0.0.1:{port}/api/v1/events/batch", content=body,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            latencies.append(time.perf_counter() - started)
            sent["requests"] += 1
            if response.status_code != 202:
                sent["errors"] += 1
                print("unexpected", response.status_code, response.text[:300])
                continue
            data = response.json()
            for key in ("accepted", "duplicates", "rejected"):
                sent[key] += data[key]

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=120) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
    sent["elapsed"] = time.perf_counter() - started
    sent["latencies"] = latencies
    return sent


def wait_for(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code in (200, 503):
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit("gunicorn did not start")


def copy_ceiling(project_id: int, rows: int) -> float:
    """Rows/s of PostgreSQL COPY of comparable event rows into the same table (then removed)."""
    rng = random.Random(3)
    now = datetime.now(UTC)
    buffer = io.StringIO()
    for i in range(rows):
        provider, model = rng.choice(MODELS)
        buffer.write(
            f"{uuid.uuid4()}\t{project_id}\t{provider}\t{model}\t{rng.randint(200, 8000)}\t{rng.randint(20, 800)}\t0\t0\t"
            f"computed\t{now.isoformat()}\t{now.isoformat()}\t{{\"feature\": \"chat\"}}\tcopy-{i}\tapi\ttrue\tbench\n"
        )
    data = buffer.getvalue()
    columns = ("uuid, project_id, provider, model, input_tokens, output_tokens, cached_tokens, reasoning_tokens, "
               "cost_source, occurred_at, received_at, tags, idempotency_key, source, success, token_prefix")
    with psycopg.connect(database_url()) as conn:
        started = time.perf_counter()
        with conn.cursor().copy(f"COPY costs_costevent ({columns}) FROM STDIN") as copy:
            copy.write(data)
        conn.commit()
        elapsed = time.perf_counter() - started
        conn.execute("DELETE FROM costs_costevent WHERE idempotency_key LIKE 'copy-%%'")
        conn.commit()
    return rows / elapsed


def verify(project_id: int) -> tuple[int, int, int]:
    with psycopg.connect(database_url()) as conn:
        events = conn.execute("SELECT count(*) FROM costs_costevent WHERE project_id = %s", [project_id]).fetchone()[0]
        distinct = conn.execute("SELECT count(DISTINCT idempotency_key) FROM costs_costevent WHERE project_id = %s",
                                [project_id]).fetchone()[0]
        rolled = conn.execute(
            "SELECT coalesce(sum(requests), 0) FROM costs_costrollup WHERE project_id = %s AND granularity = 'h' AND tag_key = ''",
            [project_id],
        ).fetchone()[0]
    return events, distinct, rolled


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn worker processes")
    parser.add_argument("--spread-hours", type=float, default=0.1,
                        help="events' timestamps spread over this many hours before now: 0.1 is a live "
                             "exporter; 48 is a backfill touching ~100x more rollup rows per batch")
    parser.add_argument("--keep", action="store_true", help="keep the bench database afterwards")
    args = parser.parse_args()

    print(f"Pulse ingestion bench: {os.cpu_count()} CPUs, {args.clients} clients x batches of {BATCH}, "
          f"gunicorn {args.workers} workers, {args.seconds:g} s, timestamps over {args.spread_hours:g} h")
    reset_database()
    token, project_id = prepare()
    port = free_port()
    server = subprocess.Popen(
        [PYTHON, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", str(args.workers),
         "--log-level", "warning"],
        cwd=ROOT, env=bench_env(), start_new_session=True,
    )
    try:
        wait_for(port)
        # Warm-up: each worker's first batch resolves prices (adopting catalog models).
        asyncio.run(load(port, token, 2, args.clients, args.spread_hours * 3600))
        warm = verify(project_id)[0]
        result = asyncio.run(load(port, token, args.seconds, args.clients, args.spread_hours * 3600))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    events, distinct, rolled = verify(project_id)
    ceiling = copy_ceiling(project_id, 100_000)

    rate = result["accepted"] / result["elapsed"]
    lat = sorted(result["latencies"])
    print(f"\n{'batches sent':<40}{result['requests']:>12,}   ({result['errors']} non-202)")
    print(f"{'events accepted':<40}{result['accepted']:>12,}   (duplicates {result['duplicates']}, rejected {result['rejected']})")
    print(f"{'sustained events/s over HTTP':<40}{rate:>12,.0f}   (target >= 20,000)")
    print(f"{'batch latency p50 / p95':<40}{statistics.median(lat) * 1000:>9.1f} ms / {lat[int(len(lat) * 0.95) - 1] * 1000:.1f} ms")
    print(f"{'PostgreSQL COPY, same rows, same table':<40}{ceiling:>12,.0f}   rows/s (ceiling; ratio {rate / ceiling:.2f})")
    print(f"{'events in the database':<40}{events:>12,}   (warm-up {warm:,} + accepted {result['accepted']:,})")
    exact = events == warm + result["accepted"] and distinct == events and rolled == events
    print(f"{'rollups count (hourly, untagged)':<40}{rolled:>12,}")
    print(f"\nVerdict\n  {'PASS' if exact else 'FAIL'}  nothing lost, nothing doubled, rollups equal the events")
    print(f"  {'PASS' if rate >= 20_000 else 'MISS'}  {rate:,.0f} events/s (>= 20,000)")
    if not args.keep:
        drop_database()
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
