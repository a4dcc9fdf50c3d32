from __future__ import annotations

from django.conf import settings
from django.urls import reverse

from . import emails
from .models import Invitation, Role


def accept_url(raw_token: str) -> str:
    return settings.SITE_URL + reverse("invitation_accept", args=[raw_token])


def send_invitation(invitation: Invitation, raw_token: str) -> None:
    inviter = invitation.invited_by.display_name if invitation.invited_by else "A teammate"
    emails.send_email(
        "invitation",
        invitation.email,
        {
            "inviter": inviter,
            "organization": invitation.organization,
            "role": Role(invitation.role).label.lower(),
            "email": invitation.email,
            "expires_at": invitation.expires_at,
            "accept_url": accept_url(raw_token),
        },
    )
