"""Create (or refresh) the demo account used by `make run`, and print how to sign in."""

from __future__ import annotations

import os
import secrets

from allauth.account.models import EmailAddress
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import ApiToken, Organization, Project, Role, User

DEMO_EMAIL = "demo@pulse.local"
DEMO_ORGANIZATION = "Demo Inc."
DEMO_PROJECT = "Production"
DEMO_TOKEN_NAME = "Demo token"  # noqa: S105  (a label, not a secret)


class Command(BaseCommand):
    help = "Create the demo user, organization, project and API token; prints fresh credentials."

    @transaction.atomic
    def handle(self, *args: object, **options: object) -> None:
        password = secrets.token_urlsafe(12)
        user, created = User.objects.get_or_create(email=DEMO_EMAIL, defaults={"first_name": "Demo"})
        user.set_password(password)
        user.is_staff = user.is_superuser = True  # the demo operator can open /admin/ too
        user.save()
        EmailAddress.objects.update_or_create(
            user=user, email=DEMO_EMAIL, defaults={"verified": True, "primary": True}
        )
        organization = Organization.objects.visible_to(user).filter(name=DEMO_ORGANIZATION).first()
        if organization is None:
            organization = Organization.objects.create(name=DEMO_ORGANIZATION, time_zone="Europe/London")
            organization.add_member(user, Role.OWNER)
        project, _ = Project.objects.get_or_create(organization=organization, name=DEMO_PROJECT)
        Project.objects.get_or_create(organization=organization, name="Staging")
        # Raw tokens are never stored, so a fresh one is issued (and the old one revoked) each time.
        for old in ApiToken.objects.visible_to(user).active().filter(project=project, name=DEMO_TOKEN_NAME):
            old.revoke(by=user)
        _, raw = ApiToken.issue(
            project=project,
            name=DEMO_TOKEN_NAME,
            scopes=[ApiToken.Scope.READ, ApiToken.Scope.WRITE, ApiToken.Scope.INGEST],
            by=user,
        )
        self.stdout.write(
            self.style.SUCCESS(
                "\n".join(
                    [
                        "",
                        "Pulse demo data is ready.",
                        f"  Sign in:   {DEMO_EMAIL}  /  {password}   ({'created' if created else 'password reset'})",
                        f"  Project:   {organization.name} / {project.name}",
                        f"  API token: {raw}",
                        f"  Try:       curl -H 'Authorization: Bearer {raw}' http://127.0.0.1:{os.environ.get('PULSE_PORT', '8000')}/api/v1/me",
                        "",
                    ]
                )
            )
        )
