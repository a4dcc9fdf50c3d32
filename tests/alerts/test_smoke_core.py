from datetime import UTC, datetime
from decimal import Decimal

from django.core import mail

from alerts import budgets, notify
from alerts.models import Alert, Budget, Delivery
from costs.ingestion import ingest


def test_core_path(personas, django_capture_on_commit_callbacks):
    now = datetime.now(UTC)
    budget = Budget.objects.create(organization=personas.org, project=personas.project, name="Prod", amount=Decimal("10"))
    budget.notify_members.add(personas.owner)
    budget.extra_emails = ["ops@a.example"]
    budget.save()
    ingest(personas.project, [{"provider": "openai", "model": "m", "input_tokens": 1, "output_tokens": 1,
                               "cost_usd": "8.5", "timestamp": now.isoformat()}])
    status = budgets.BudgetStatus.of(budget)
    assert status.spent == Decimal("8.5")
    with django_capture_on_commit_callbacks(execute=False):
        raised = budgets.evaluate_budget(budget)
    assert [a.threshold for a in raised] == [50, 80]
    assert budgets.evaluate_budget(budget) == []
    top = Alert.objects.get(threshold=80)
    print(top.title, top.message)
    ids = list(top.deliveries.values_list("id", flat=True))
    assert len(ids) == 2
    for i in ids:
        notify.send_delivery(i)
    assert len(mail.outbox) == 2
    print(mail.outbox[0].subject, mail.outbox[0].extra_headers)
    assert Delivery.objects.filter(status="sent").count() == 2
