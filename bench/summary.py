"""How fast is the cost summary at 1 M (or 10 M) events in one project?

    .venv/bin/python bench/summary.py --events 1000000     # ~1.5 minutes
    .venv/bin/python bench/summary.py --events 10000000    # ~10 minutes
    .venv/bin/python bench/summary.py --keep               # leave the database for EXPLAIN ANALYZE

1. Creates a throwaway PostgreSQL database (`pulse_bench_summary`; dropped at the end unless
   --keep) and migrates it.
2. Writes N events into one project over the last 90 days with `COPY` (a realistic mix: 20 models
   of 6 providers, one of them unpriced; 10 API keys with skewed traffic; `feature` and
   `environment` tags; ~2 % failures; latencies).
3. Builds the rollups with one `INSERT … SELECT … GROUP BY` per granularity and tag key. This
   mirrors what `costs.ingestion` maintains incrementally (same keys: UTC hour/day buckets,
   provider, model, token prefix, and one row per rolled-up tag key in
   `settings.COST_ROLLUP_TAG_KEYS`); the script checks that the rollups add up to the events.
4. Measures p50/p95 over --requests requests (after a warm-up) of (a) the summary API through
   Django's test Client with a read token, and (b) `Summary.build()` alone, and prints a table.
   With --page, also (c) GET of the project dashboard (/projects/<uuid>/, the costs overview)
   through the test Client as the signed-in owner, for each range.

Targets (DESIGN.md): cost summary API at 10 M events in one project, p95 < 50 ms; dashboard
page server time at 1 M events, p95 < 150 ms.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SERVER = "postgres://postgres@127.0.0.1:5432"
DAYS = 90
COPY_CHUNK = 50_000

# (provider, model, $ per Mtok input, $ per Mtok output, traffic weight); None = unpriced.
MODELS = [
    ("openai", "gpt-4o", 2.5, 10, 14), ("openai", "gpt-4o-mini", 0.15, 0.6, 22), ("openai", "gpt-4.1", 2, 8, 6),
    ("openai", "gpt-4.1-mini", 0.4, 1.6, 8), ("openai", "o3-mini", 1.1, 4.4, 3), ("openai", "text-embedding-3-small", 0.02, 0, 9),
    ("anthropic", "claude-sonnet-4", 3, 15, 9), ("anthropic", "claude-3-5-haiku", 0.8, 4, 6), ("anthropic", "claude-opus-4", 15, 75, 1),
    ("google-gla", "gemini-2.5-flash", 0.3, 2.5, 5), ("google-gla", "gemini-2.5-pro", 1.25, 10, 2),
    ("google-gla", "gemini-2.0-flash-lite", 0.075, 0.3, 3), ("groq", "llama-3.3-70b-versatile", 0.59, 0.79, 3),
    ("groq", "llama-3.1-8b-instant", 0.05, 0.08, 2), ("mistral", "mistral-large-latest", 2, 6, 1),
    ("mistral", "mistral-small-latest", 0.1, 0.3, 2), ("deepseek", "deepseek-chat", 0.27, 1.1, 2),
    ("deepseek", "deepseek-reasoner", 0.55, 2.19, 1), ("together", "qwen-2.5-72b", 1.2, 1.2, 1),
    ("acme-ai", "internal-finetune-v2", None, None, 1),  # no price known: unpriced events
]
FEATURES = ["search", "chat", "summarize", "classify", "extract", "translate", "autocomplete", "agent"]
ENVIRONMENTS = ["production"] * 8 + ["staging"] * 2 + ["development"]
TOKEN_WEIGHTS = [30, 20, 12, 10, 8, 6, 5, 4, 3, 2]

EVENT_COLUMNS = (
    "uuid", "project_id", "api_token_id", "token_prefix", "provider", "model", "input_tokens", "output_tokens",
    "cached_tokens", "reasoning_tokens", "cost_usd", "cost_source", "latency_ms", "status_code", "success",
    "occurred_at", "received_at", "tags", "source",
)


# --------------------------------------------------------------------------- database


def recreate_database(name: str) -> None:
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def setup_django(name: str) -> None:
    os.environ["DATABASE_URL"] = f"{SERVER}/{name}"
    os.environ["PULSE_ENV"] = "development"
    os.environ["DEBUG"] = "false"  # DEBUG keeps every query in memory and slows requests down
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.test.utils import setup_test_environment

    setup_test_environment(debug=False)  # lets the test Client in ("testserver")


# --------------------------------------------------------------------------- data


def make_tenant() -> tuple[object, list[object], str]:
    from accounts.models import ApiToken, Organization, User

    owner = User.objects.create_user(email="bench@summary.example", password="bench-password-not-secret")
    organization = Organization.create_for_owner(owner, name="Bench", project_name="Production")
    project = organization.projects.get()
    keys = [ApiToken.issue(project=project, name=f"service {n}", scopes=["ingest"], by=owner)[0] for n in range(10)]
    _reader, raw = ApiToken.issue(project=project, name="dashboard", scopes=["read"], by=owner)
    return project, keys, raw


def event_lines(project_id: int, keys: list, count: int, now: datetime, seed: int) -> Iterator[str]:
    """Tab-separated COPY rows. UUIDs are a counter in UUID form: unique, and cheap to make."""
    rng = random.Random(seed)
    start = now - timedelta(days=DAYS)
    span = (now - start).total_seconds()
    model_weights = [m[4] for m in MODELS]
    received = now.isoformat()
    for i in range(count):
        provider, model, price_in, price_out, _ = rng.choices(MODELS, model_weights)[0]
        key = rng.choices(keys, TOKEN_WEIGHTS)[0]
        tokens_in = int(rng.lognormvariate(6.5, 1.0))
        tokens_out = 0 if price_out == 0 else int(rng.lognormvariate(5.0, 0.9))
        cached = tokens_in // 2 if rng.random() < 0.3 else 0
        reasoning = tokens_out // 3 if model.startswith(("o3", "deepseek-r")) else 0
        if price_in is None:
            cost, source = r"\N", "unpriced"
        else:
            cost, source = f"{(tokens_in * price_in + tokens_out * price_out) / 1e6:.10f}", "computed"
        failed = rng.random() < 0.02
        status = rng.choice((429, 500, 503)) if failed else 200
        latency = f"{rng.lognormvariate(6.6, 0.6):.1f}"
        occurred = (start + timedelta(seconds=rng.random() * span)).isoformat()
        tags = f'{{"feature": "{rng.choice(FEATURES)}", "environment": "{rng.choice(ENVIRONMENTS)}"}}' if rng.random() < 0.9 else "{}"
        yield (
            f"00000000-0000-4000-8000-{i:012x}\t{project_id}\t{key.id}\t{key.prefix}\t{provider}\t{model}\t"
            f"{tokens_in}\t{tokens_out}\t{cached}\t{reasoning}\t{cost}\t{source}\t{latency}\t{status}\t"
            f"{'f' if failed else 't'}\t{occurred}\t{received}\t{tags}\tapi\n"
        )


def copy_events(project_id: int, keys: list, count: int, now: datetime) -> float:
    from django.db import connection

    started = time.perf_counter()
    lines = event_lines(project_id, keys, count, now, seed=42)
    with connection.cursor() as cursor, cursor.cursor.copy(
        f"COPY costs_costevent ({', '.join(EVENT_COLUMNS)}) FROM STDIN"
    ) as copy:
        chunk: list[str] = []
        for line in lines:
            chunk.append(line)
            if len(chunk) == COPY_CHUNK:
                copy.write("".join(chunk))
                chunk.clear()
        if chunk:
            copy.write("".join(chunk))
    return time.perf_counter() - started


def build_rollups(project_id: int) -> tuple[float, int]:
    """Mirrors `costs.ingestion.rollup_keys()` and `_deltas_for()`: per UTC hour and day, an
    untagged row counting every event once, plus one row per rolled-up tag key it carries, plus
    per day one row per tag value across providers, models and tokens."""
    from django.db import connection

    from costs.models import rollup_tag_keys

    started = time.perf_counter()
    counters = """count(*), count(*) FILTER (WHERE NOT success), sum(input_tokens), sum(output_tokens),
        sum(cached_tokens), sum(reasoning_tokens), coalesce(sum(cost_usd), 0), count(*) FILTER (WHERE cost_usd IS NULL),
        coalesce(sum(latency_ms), 0), count(latency_ms)"""
    columns = """project_id, granularity, bucket, provider, model, token_prefix, tag_key, tag_value, requests, failures,
        input_tokens, output_tokens, cached_tokens, reasoning_tokens, cost_usd, unpriced_requests, latency_ms_sum,
        latency_count"""
    with connection.cursor() as cursor:
        for granularity, unit in (("h", "hour"), ("d", "day")):
            bucket = f"date_trunc('{unit}', occurred_at, 'UTC')"
            cursor.execute(
                f"""INSERT INTO costs_costrollup ({columns})
                SELECT project_id, %s, {bucket}, provider, model, token_prefix, '', '', {counters}
                FROM costs_costevent WHERE project_id = %s GROUP BY project_id, {bucket}, provider, model, token_prefix""",
                [granularity, project_id],
            )
            for key in rollup_tag_keys():
                cursor.execute(
                    f"""INSERT INTO costs_costrollup ({columns})
                    SELECT project_id, %s, {bucket}, provider, model, token_prefix, %s, left(tags ->> %s, 128), {counters}
                    FROM costs_costevent WHERE project_id = %s AND tags ? %s
                    GROUP BY project_id, {bucket}, provider, model, token_prefix, left(tags ->> %s, 128)""",
                    [granularity, key, key, project_id, key, key],
                )
        cursor.execute(  # day totals over providers, models and tokens
            f"""INSERT INTO costs_costrollup ({columns})
            SELECT project_id, 't', date_trunc('day', occurred_at, 'UTC'), '', '', '', '', '', {counters}
            FROM costs_costevent WHERE project_id = %s GROUP BY project_id, date_trunc('day', occurred_at, 'UTC')""",
            [project_id],
        )
        for key in rollup_tag_keys():  # and per tag value
            cursor.execute(
                f"""INSERT INTO costs_costrollup ({columns})
                SELECT project_id, 't', date_trunc('day', occurred_at, 'UTC'), '', '', '', %s, left(tags ->> %s, 128), {counters}
                FROM costs_costevent WHERE project_id = %s AND tags ? %s
                GROUP BY project_id, date_trunc('day', occurred_at, 'UTC'), left(tags ->> %s, 128)""",
                [key, key, project_id, key, key],
            )
        cursor.execute("ANALYZE costs_costevent")
        cursor.execute("ANALYZE costs_costrollup")
        cursor.execute("SELECT count(*) FROM costs_costrollup WHERE project_id = %s", [project_id])
        rows = cursor.fetchone()[0]
    return time.perf_counter() - started, rows


def check_rollups(project_id: int, count: int) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), coalesce(sum(cost_usd), 0) FROM costs_costevent WHERE project_id = %s", [project_id])
        events, cost = cursor.fetchone()
        for granularity in ("h", "d", "t"):
            cursor.execute(
                "SELECT sum(requests), sum(cost_usd) FROM costs_costrollup WHERE project_id = %s AND granularity = %s AND tag_key = ''",
                [project_id, granularity],
            )
            requests, rolled_cost = cursor.fetchone()
            assert (events, requests, Decimal(rolled_cost)) == (count, count, Decimal(cost)), (granularity, events, requests, cost, rolled_cost)


# --------------------------------------------------------------------------- measuring


def timed(fn: Callable[[], object], requests: int, warmup: int = 5) -> tuple[float, float, int]:
    """(p50 ms, p95 ms, queries per call)."""
    from django.db import connection

    for _ in range(warmup):
        fn()
    # Counted with a wrapper: the test Client's request_started signal resets connection.queries.
    queries: list[str] = []
    with connection.execute_wrapper(lambda execute, sql, params, many, context: (queries.append(sql), execute(sql, params, many, context))[1]):
        fn()
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[max(0, round(0.95 * len(samples)) - 1)], len(queries)


def measure_page(project: object, requests: int) -> list[tuple[str, float, float, int]]:
    """The dashboard as a signed-in person gets it: session, tenancy, the overview, the template.
    The recommendations are cached between requests (as in production), so the warm-up pays
    for them once; "first view" times one request with that cache cleared."""
    from django.core.cache import cache
    from django.test import Client

    from accounts.models import User

    client = Client()
    client.force_login(User.objects.get(email="bench@summary.example"))

    def page(query: str) -> Callable[[], object]:
        def call() -> None:
            response = client.get(f"/projects/{project.uuid}/{query}")
            assert response.status_code == 200, response.content[:500]

        return call

    cases = [(f"page dashboard {q or 'range=30d (default)'}", page(f"?{q}" if q else "")) for q in ("", "range=7d", "range=90d")]
    results = [(name, *timed(fn, requests)) for name, fn in cases]

    def first_view() -> None:
        cache.delete(f"costs:overview:recommendations:{project.uuid}")
        page("")()

    results.append(("page dashboard, recommendations uncached", *timed(first_view, max(5, requests // 5), warmup=1)))
    return results


def measure(project: object, raw_token: str, requests: int) -> list[tuple[str, float, float, int]]:
    from django.test import Client

    from costs.summary import Period, Summary, token_usage

    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw_token}")

    def api(query: str) -> Callable[[], object]:
        def call() -> None:
            response = client.get(f"/api/v1/costs/{query}")
            assert response.status_code == 200, response.content[:500]
            if response.streaming:
                b"".join(response.streaming_content)

        return call

    cases = [
        ("API summary range=30d", api("summary?range=30d")),
        ("API summary range=90d&tag=feature", api("summary?range=90d&tag=feature")),
        ("API summary range=7d&currency=GBP", api("summary?range=7d&currency=GBP")),
        ("API tokens range=90d", api("tokens?range=90d")),
        ("API summary CSV range=90d", api("summary?range=90d&format=csv")),
        ("Summary.build 30d", lambda: Summary.build([project], Period.for_range("30d"))),
        ("Summary.build 90d tag=feature", lambda: Summary.build([project], Period.for_range("90d"), tag="feature")),
        ("token_usage 90d", lambda: token_usage([project], Period.for_range("90d"))),
    ]
    return [(name, *timed(fn, requests)) for name, fn in cases]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--database", default="pulse_bench_summary")
    parser.add_argument("--keep", action="store_true", help="Keep the database afterwards (for EXPLAIN ANALYZE).")
    parser.add_argument("--page", action="store_true", help="Also time GET of the project dashboard page.")
    args = parser.parse_args()

    recreate_database(args.database)
    try:
        setup_django(args.database)
        from django.core.management import call_command
        from django.db import connection

        call_command("migrate", verbosity=0)
        project, keys, raw = make_tenant()
        now = datetime.now(UTC)
        copy_seconds = copy_events(project.id, keys, args.events, now)
        print(f"COPY {args.events:,} events: {copy_seconds:.1f} s ({args.events / copy_seconds:,.0f} rows/s)")
        rollup_seconds, rollup_rows = build_rollups(project.id)
        print(f"rollups: {rollup_rows:,} rows in {rollup_seconds:.1f} s")
        check_rollups(project.id, args.events)

        results = measure(project, raw, args.requests)
        if args.page:
            results += measure_page(project, args.requests)
        print(f"\n{args.events:,} events in one project, {args.requests} timed calls each (after 5 warm-up calls)")
        print(f"{'case':<44} {'p50 ms':>8} {'p95 ms':>8} {'queries':>8}")
        for name, p50, p95, queries in results:
            print(f"{name:<44} {p50:>8.1f} {p95:>8.1f} {queries:>8}")
        api_p95 = max(p95 for name, _, p95, _ in results if name.startswith("API summary"))
        print(f"\ntarget: summary API p95 < 50 ms -> worst {api_p95:.1f} ms: {'met' if api_p95 < 50 else 'MISSED'}")
        if args.page:
            page_p95 = max(p95 for name, _, p95, _ in results if name.startswith("page dashboard range"))
            print(f"target: dashboard page p95 < 150 ms -> worst {page_p95:.1f} ms: {'met' if page_p95 < 150 else 'MISSED'}")
        connection.close()
    finally:
        if not args.keep:
            drop_database(args.database)


if __name__ == "__main__":
    main()
