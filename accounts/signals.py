from __future__ import annotations

from allauth.account.signals import user_signed_up
from django.dispatch import receiver
from django.http import HttpRequest

from .models import Organization, User


@receiver(user_signed_up)
def create_personal_organization(sender: object, request: HttpRequest, user: User, **kwargs: object) -> None:
    """Every new user starts as the owner of their own organization with one project."""
    local_part = user.email.split("@", 1)[0]
    Organization.create_for_owner(user, name=f"{local_part}'s organization")
