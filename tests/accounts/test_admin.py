"""Operators' Django admin: staff only, signed in through allauth, useful lists, no secrets."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import ApiToken, Invitation, Role
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator():
    return make_user("ops@pulse.example", is_staff=True, is_superuser=True)


def test_anonymous_admin_goes_to_allauth_login(client):
    response = client.get("/admin/", follow=True)
    assert response.redirect_chain[-1][0].startswith(reverse("account_login"))
    assert response.status_code == 200


def test_admin_login_url_is_allauths_too(client):
    response = client.get("/admin/login/")
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))


def test_non_staff_user_is_refused(client, personas):
    client.force_login(personas.owner)
    assert client.get("/admin/", follow=True).status_code == 403


@pytest.mark.parametrize(
    "model", ["user", "organization", "project", "membership", "invitation", "apitoken"]
)
def test_operator_sees_every_list_and_change_page(client, operator, personas, model):
    token, raw = ApiToken.issue(project=personas.project, name="ci", scopes=["read"], by=personas.owner)
    invitation, invite_raw = Invitation.issue(personas.org, "new@a.example", Role.MEMBER, by=personas.owner)
    objects = {
        "user": personas.owner,
        "organization": personas.org,
        "project": personas.project,
        "membership": personas.org.memberships.first(),
        "invitation": invitation,
        "apitoken": token,
    }
    client.force_login(operator)

    changelist = client.get(reverse(f"admin:accounts_{model}_changelist"), {"q": "a"})
    change = client.get(reverse(f"admin:accounts_{model}_change", args=[objects[model].pk]))

    assert changelist.status_code == 200
    assert change.status_code == 200
    for page in (changelist, change):
        html = page.content.decode()
        assert raw not in html and token.secret_hash not in html
        assert invite_raw not in html and invitation.token_hash not in html


def test_operator_can_revoke_tokens_in_bulk(client, operator, personas):
    token, _ = ApiToken.issue(project=personas.project, name="ci", scopes=["read"], by=personas.owner)
    client.force_login(operator)
    response = client.post(
        reverse("admin:accounts_apitoken_changelist"),
        {"action": "revoke", "_selected_action": [token.pk]},
    )
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
