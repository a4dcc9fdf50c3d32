"""Invalidation of the gateway's cached configuration when what it was built from changes.

Every gateway process serves from snapshots (gateway/state.py): a token's, and a project's
(settings, routes with their connections, prices and benchmark speeds, rate limits, hard
budgets). A save or delete of any row they are built from retires the affected snapshots once
the change has committed (before, a gateway could rebuild from the old rows). Each process's own
copy lives at most GATEWAY_STATE_LOCAL_TTL_S longer, so a revoked token stops within ~1 s.

Budget *spend* is not invalidated here: it changes with every call, and admission keeps its own
running count in Redis (gateway/admission.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from accounts.models import ApiToken, Organization, Project
from alerts.models import Budget
from benchmarks.models import Price

from . import state
from .models import Connection, GatewaySettings, RateLimit, Route, RouteUpstream

logger = logging.getLogger(__name__)


def _retire(*, token_prefixes: Iterable[str] = (), project_ids: Iterable[int] = (), everything: bool = False) -> None:
    prefixes, projects = list(token_prefixes), list(project_ids)

    def retire() -> None:
        try:
            state.invalidate(token_prefixes=prefixes, project_ids=projects, everything=everything)
        except Exception:  # Redis down: the snapshots still expire with their TTL
            logger.exception("Could not invalidate the gateway's cached configuration")

    transaction.on_commit(retire)


def _projects_of(organization_id: int) -> list[int]:
    return list(Project.objects.filter(organization_id=organization_id).values_list("id", flat=True))


@receiver([post_save, post_delete], sender=ApiToken)
def token_changed(sender, instance: ApiToken, **kwargs) -> None:
    _retire(token_prefixes=[instance.prefix])


@receiver([post_save, post_delete], sender=Project)
def project_changed(sender, instance: Project, **kwargs) -> None:
    _retire(project_ids=[instance.pk])


@receiver([post_save, post_delete], sender=Organization)
def organization_changed(sender, instance: Organization, **kwargs) -> None:
    # allow_private_egress flows into every upstream of its projects.
    _retire(project_ids=_projects_of(instance.pk))


@receiver([post_save, post_delete], sender=Connection)
def connection_changed(sender, instance: Connection, **kwargs) -> None:
    _retire(project_ids=_projects_of(instance.organization_id))


@receiver([post_save, post_delete], sender=Route)
@receiver([post_save, post_delete], sender=GatewaySettings)
@receiver([post_save, post_delete], sender=RateLimit)
def project_setting_changed(sender, instance, **kwargs) -> None:
    _retire(project_ids=[instance.project_id])


@receiver([post_save, post_delete], sender=RouteUpstream)
def upstream_changed(sender, instance: RouteUpstream, **kwargs) -> None:
    # In a cascade from its route the route's own signal retires the project too.
    project_id = Route.objects.filter(pk=instance.route_id).values_list("project_id", flat=True).first()
    if project_id is not None:
        _retire(project_ids=[project_id])


@receiver([post_save, post_delete], sender=Budget)
def budget_changed(sender, instance: Budget, **kwargs) -> None:
    if instance.project_id:
        _retire(project_ids=[instance.project_id])
    elif instance.api_token_id:
        project_id = ApiToken.objects.filter(pk=instance.api_token_id).values_list("project_id", flat=True).first()
        _retire(project_ids=[project_id] if project_id else _projects_of(instance.organization_id))
    else:
        _retire(project_ids=_projects_of(instance.organization_id))


@receiver([post_save, post_delete], sender=Price)
def price_changed(sender, instance: Price, **kwargs) -> None:
    _retire(everything=True)
