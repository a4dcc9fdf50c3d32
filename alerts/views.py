"""Budgets and alerts pages (being built: see the alerts issue)."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse


def alerts_home(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise NotImplementedError


def unsubscribe(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise NotImplementedError


def alert_history(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise NotImplementedError


def alert_detail(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise NotImplementedError


def budget_list(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise NotImplementedError


def budget_create(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise NotImplementedError


def budget_detail(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise NotImplementedError


def budget_edit(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise NotImplementedError


def budget_delete(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise NotImplementedError


def alert_rule_list(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise NotImplementedError


def alert_rule_create(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise NotImplementedError


def alert_rule_edit(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise NotImplementedError


def alert_rule_delete(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise NotImplementedError


def alert_channels(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise NotImplementedError


def email_test(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise NotImplementedError


def webhook_create(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise NotImplementedError


def webhook_edit(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise NotImplementedError


def webhook_delete(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise NotImplementedError


def webhook_test(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise NotImplementedError


def webhook_rotate_secret(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise NotImplementedError

