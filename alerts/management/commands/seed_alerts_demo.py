"""Demo budgets and a performance rule for `make run`, on top of `seed_demo`, `seed_costs_demo`
and `seed_benchmark_demo`: a monthly project budget that has passed 80 % (so the history and
the dashboard show real alerts), a daily budget on the support bot's tag, a hard budget on the
batch-jobs token, and a TTFT rule on a simulated model. Amounts are set from the demo's own
spend, so the picture is the same whatever day `make run` happens on. Idempotent."""

from __future__ import annotations

from decimal import ROUND_UP, Decimal

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from accounts.management.commands.seed_demo import DEMO_EMAIL, DEMO_ORGANIZATION, DEMO_PROJECT
from accounts.models import ApiToken, Organization, Project, User
from alerts.budgets import BudgetPeriod, evaluate_budget, spend_usd
from alerts.models import AlertRule, Budget
from benchmarks.models import Model


def _round_up(amount: Decimal, step: int) -> Decimal:
    return max(Decimal(step), (amount / step).quantize(Decimal(1), rounding=ROUND_UP) * step)


class Command(BaseCommand):
    help = "Create demo budgets and a performance rule for the demo organization, and raise their alerts."

    def handle(self, *args: object, **options: object) -> None:
        user = User.objects.filter(email=DEMO_EMAIL).first()
        if user is None:
            raise CommandError("Run seed_demo first.")
        organization = Organization.objects.visible_to(user).get(name=DEMO_ORGANIZATION)
        project = Project.objects.get(organization=organization, name=DEMO_PROJECT)
        now = timezone.now()
        with transaction.atomic():
            budgets = []
            monthly, created = Budget.objects.get_or_create(
                organization=organization, project=project, name="Production monthly",
                defaults={"amount": Decimal(1), "period": Budget.Period.MONTH, "created_by": user},
            )
            if created:
                # Sized so that this month's spend is ~85 % of it: the 50 and 80 % alerts are due.
                period = BudgetPeriod.containing(Budget.Period.MONTH, organization.time_zone, now)
                monthly.amount = _round_up(spend_usd(monthly, period.start, now) / Decimal("0.85"), 10)
                monthly.save()
                monthly.notify_members.add(user)
            budgets.append(monthly)
            support, created = Budget.objects.get_or_create(
                organization=organization, name="Support bot, daily", tag_key="feature", tag_value="support-bot",
                defaults={"amount": Decimal(5), "period": Budget.Period.DAY, "currency": "GBP", "created_by": user},
            )
            if created:
                support.notify_members.add(user)
            budgets.append(support)
            batch = ApiToken.objects.filter(project=project, name="Batch jobs").first()
            if batch is not None:
                hard, created = Budget.objects.get_or_create(
                    organization=organization, api_token=batch, name="Batch jobs (hard cap)",
                    defaults={"amount": Decimal(1), "period": Budget.Period.WEEK, "created_by": user,
                              "enforcement": Budget.Enforcement.HARD, "thresholds": [80, 100]},
                )
                if created:
                    period = BudgetPeriod.containing(Budget.Period.WEEK, organization.time_zone, now)
                    hard.amount = _round_up(spend_usd(hard, period.start, now) * 3, 5)
                    hard.save()
                    hard.notify_members.add(user)
                budgets.append(hard)
            model = Model.objects.filter(name="sim-flaky", is_active=True).first()
            if model is not None:
                rule, created = AlertRule.objects.get_or_create(
                    organization=organization, catalog_model=model, name="sim-flaky errors",
                    defaults={"metric": AlertRule.Metric.ERROR_RATE, "threshold": 20, "window_results": 20,
                              "min_results": 3, "created_by": user},
                )
                if created:
                    rule.notify_members.add(user)
        raised = sum(len(evaluate_budget(budget)) for budget in budgets)
        self.stdout.write(f"Demo alerts: {len(budgets)} budgets ({raised} alerts raised now).")
