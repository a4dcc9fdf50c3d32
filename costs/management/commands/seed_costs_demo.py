"""Demo spend for `make run`: ~45,000 LLM calls over the last 90 days in the demo project that
`seed_demo` creates, so the activity log, the API tokens page and the summaries have something
real-looking to show. Every event goes through `costs.ingestion.ingest()` (the one way events
are created, which prices them and keeps the rollups right), in batches of 1,000.

The traffic: eight models genai-prices knows plus one it does not (to show the unpriced
warning), weekday peaks and quiet weekends, steady growth, office hours in the organization's
zone, three API tokens, feature/environment/end_user tags, prompt caching on some calls and a
few rate-limit and server errors. Seeded randomness: the same numbers every time."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from accounts.management.commands.seed_demo import DEMO_EMAIL, DEMO_ORGANIZATION, DEMO_PROJECT
from accounts.models import ApiToken, Organization, Project, Role, User
from costs.ingestion import MAX_BATCH, ingest
from costs.models import CostEvent


@dataclass(frozen=True)
class DemoModel:
    provider: str
    model: str
    share: float  # of all calls
    input_tokens: int  # typical prompt size
    output_tokens: int
    latency_ms: float
    caches: bool  # the provider has prompt caching


MODELS = [
    DemoModel("openai", "gpt-4o", 0.17, 1800, 380, 2100, True),
    DemoModel("openai", "gpt-4o-mini", 0.30, 1200, 260, 950, True),
    DemoModel("anthropic", "claude-3-5-sonnet-latest", 0.13, 2600, 420, 2700, True),
    DemoModel("anthropic", "claude-3-5-haiku-latest", 0.12, 1000, 210, 1200, True),
    DemoModel("google-gla", "gemini-1.5-flash", 0.11, 3200, 300, 850, False),
    DemoModel("groq", "llama-3.3-70b-versatile", 0.07, 900, 260, 480, False),
    DemoModel("groq", "llama-3.1-8b-instant", 0.05, 600, 150, 260, False),
    DemoModel("mistral", "mistral-small-latest", 0.03, 900, 220, 700, False),
    # Not in any price list: shows the "unpriced" badge and warning (cost unknown, never $0).
    DemoModel("acme-labs", "acme-finetune-v2", 0.02, 1500, 300, 1400, False),
]
SUPPORT_BOT = "Support bot"  # its calls are all the support-bot feature
TOKENS = [("Backend (production)", 0.62), ("Batch jobs", 0.26), (SUPPORT_BOT, 0.12)]
FEATURES = [("chat", 0.38), ("search", 0.22), ("summarize", 0.17), ("extraction", 0.13), ("support-bot", 0.10)]
END_USERS = [f"user-{n:03d}" for n in range(1, 41)]
# Share of a day's calls per local hour: office hours, a lunch dip, a quiet night.
HOURS = [1, 1, 1, 1, 1, 2, 3, 6, 10, 12, 12, 11, 8, 10, 12, 12, 11, 9, 6, 5, 4, 3, 2, 1]
WEEKEND = 0.45
GROWTH = (0.6, 1.4)  # daily volume 90 days ago vs today


def _pick(rng: random.Random, weighted: list[tuple[object, float]]) -> object:
    return rng.choices([item for item, _ in weighted], weights=[w for _, w in weighted])[0]


class Command(BaseCommand):
    help = "Add ~45,000 demo LLM calls over 90 days to the demo project (skipped if it already has events)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--events", type=int, default=45_000, help="How many calls (default 45,000).")
        parser.add_argument("--days", type=int, default=90, help="Spread over this many days up to now.")
        parser.add_argument("--force", action="store_true", help="Add events even if the project has some.")
        parser.add_argument("--seed", type=int, default=42)

    def handle(self, *args: object, events: int, days: int, force: bool, seed: int, **options: object) -> None:
        if events < 1 or not 1 <= days <= 365:
            raise CommandError("--events must be positive and --days between 1 and 365.")
        project = self._demo_project()
        if not force and CostEvent.objects.dangerously_unscoped().filter(project=project).exists():
            self.stdout.write(f"{project} already has cost events; skipping (--force adds more).")
            return
        tokens = self._tokens(project)
        rng = random.Random(seed)
        calls = self._calls(rng, project, tokens, events, days)
        stored = 0
        for token, items in calls.items():
            for start in range(0, len(items), MAX_BATCH):
                result = ingest(project, items[start : start + MAX_BATCH], token=token)
                if result.errors:
                    raise CommandError(f"Demo events were rejected: {result.errors[:3]}")
                stored += result.inserted
        self.stdout.write(self.style.SUCCESS(f"Added {stored:,} demo LLM calls over {days} days to {project}."))

    def _demo_project(self) -> Project:
        owner = User.objects.filter(email=DEMO_EMAIL).first()
        organization = owner and Organization.objects.visible_to(owner).filter(name=DEMO_ORGANIZATION).first()
        project = organization and organization.projects.filter(name=DEMO_PROJECT).first()
        if project is None:
            raise CommandError("No demo project: run `manage.py seed_demo` first.")
        return project

    @transaction.atomic
    def _tokens(self, project: Project) -> list[tuple[ApiToken, float]]:
        owner = project.organization.memberships.filter(role=Role.OWNER).select_related("user").first().user
        tokens = []
        for name, share in TOKENS:
            token = ApiToken.objects.visible_to(owner).active().filter(project=project, name=name).first()
            if token is None:
                # The raw value is not needed (events are ingested here directly) and not shown.
                token, _raw = ApiToken.issue(project=project, name=name, scopes=[ApiToken.Scope.INGEST], by=owner)
            tokens.append((token, share))
        return tokens

    def _calls(
        self, rng: random.Random, project: Project, tokens: list[tuple[ApiToken, float]], total: int, days: int,
    ) -> dict[ApiToken, list[dict]]:
        """The calls, per token, oldest first (so a batch touches few rollup rows)."""
        zone = ZoneInfo(project.organization.time_zone)
        now = timezone.now()
        today = now.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
        day_starts = [today - timedelta(days=n) for n in range(days - 1, -1, -1)]
        weights = []
        for index, start in enumerate(day_starts):
            growth = GROWTH[0] + (GROWTH[1] - GROWTH[0]) * index / max(days - 1, 1)
            weekend = WEEKEND if start.weekday() >= 5 else 1.0
            weights.append(growth * weekend * rng.uniform(0.85, 1.15))
        scale = total / sum(weights)
        counts = [int(w * scale) for w in weights]
        counts[-1] += total - sum(counts)  # exactly `total`
        calls: dict[ApiToken, list[dict]] = {token: [] for token, _ in tokens}
        model_weights = [(m, m.share) for m in MODELS]
        for start, count in zip(day_starts, counts, strict=True):
            for _ in range(count):
                moment = self._moment(rng, start, now)
                token = _pick(rng, tokens)
                calls[token].append(self._call(rng, _pick(rng, model_weights), moment, token.name))
        for items in calls.values():
            items.sort(key=lambda item: item["timestamp"])
        return calls

    def _moment(self, rng: random.Random, day_start: datetime, now: datetime) -> datetime:
        hour = rng.choices(range(24), weights=HOURS)[0]
        moment = day_start + timedelta(hours=hour, seconds=rng.uniform(0, 3600))
        if moment > now:  # today's calls so far only
            moment = day_start + (now - day_start) * rng.random()
        return moment

    def _call(self, rng: random.Random, model: DemoModel, moment: datetime, token_name: str) -> dict:
        input_tokens = max(20, int(rng.lognormvariate(0, 0.6) * model.input_tokens))
        output_tokens = max(1, int(rng.lognormvariate(0, 0.5) * model.output_tokens))
        cached = int(input_tokens * rng.uniform(0.4, 0.85)) if model.caches and rng.random() < 0.3 else 0
        latency = model.latency_ms * rng.lognormvariate(0, 0.35) * (0.6 + output_tokens / (2 * model.output_tokens))
        roll = rng.random()
        status = 429 if roll < 0.02 else 500 if roll < 0.027 else 200
        feature = "support-bot" if token_name == SUPPORT_BOT else _pick(rng, FEATURES)
        call = {
            "provider": model.provider,
            "model": model.model,
            "input_tokens": input_tokens,
            "cached_tokens": cached,
            "output_tokens": output_tokens if status == 200 else 0,
            "latency_ms": round(latency if status == 200 else rng.uniform(40, 400), 1),
            "status_code": status,
            "timestamp": moment.timestamp(),
            "tags": {
                "feature": feature,
                "environment": "staging" if rng.random() < 0.1 else "production",
                "end_user": rng.choice(END_USERS),
            },
            "source": "sdk",
        }
        if status != 200:
            call["cached_tokens"] = 0
        return call
