from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from .models import Invitation

# Expired invitations stay visible (as "expired") for a while so admins can see and resend them.
KEEP_EXPIRED_INVITATIONS_FOR = timedelta(days=30)


@shared_task(name="accounts.tasks.expire_invitations", ignore_result=False)
def expire_invitations() -> int:
    """Delete invitations that were never accepted and expired long ago; returns how many."""
    cutoff = timezone.now() - KEEP_EXPIRED_INVITATIONS_FOR
    deleted, _ = (
        Invitation.objects.dangerously_unscoped()
        .filter(accepted_at__isnull=True, expires_at__lt=cutoff)
        .delete()
    )
    return deleted
