from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET


@login_required
@require_GET
def alert_list(request: HttpRequest) -> HttpResponse:
    # Budgets, rules and alert history arrive with the budgets-and-alerts issue.
    return render(request, "alerts/list.html")
