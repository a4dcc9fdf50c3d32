"""The rules of organizations live on the models, and pages and API reach them the same way:

- an organization keeps at least one project (`Project.remove()`), even when two people delete
  its last two projects at the same moment;
- adding a project and withdrawing an invitation need an admin (`Project.create_in()`,
  `Invitation.withdraw()`), deleting the organization an owner (`Organization.remove()`);
- people manage members, invitations and tokens; an API token never does, whatever its scopes
  (a leaked token cannot mint more tokens or keep itself alive).

The last owner's protection (`Membership.change_role()`/`remove()`) has its page and API
specifications in test_pages.py and test_api_tenancy.py.
"""

from __future__ import annotations

import json
import threading

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, connections, transaction
from rest_framework.test import APIClient

from accounts.models import (
    ApiToken,
    Invitation,
    LastProjectError,
    Membership,
    Organization,
    Project,
    Role,
)
from tests.conftest import Personas, client_as

pytestmark = pytest.mark.django_db

API = "/api/v1"


def api_as(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def write_token(personas: Personas) -> tuple[APIClient, ApiToken]:
    token, raw = ApiToken.issue(
        project=personas.project, name="ci", scopes=["read", "write", "ingest", "gateway"], by=personas.owner
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client, token


# ---------------------------------------------------------------------------------------------
# An organization keeps at least one project
# ---------------------------------------------------------------------------------------------
def test_the_model_refuses_to_remove_the_last_project(personas):
    with pytest.raises(LastProjectError, match="at least one project"):
        personas.project.remove(by=personas.owner)

    assert Project.objects.filter(pk=personas.project.pk).exists()


def test_the_api_refuses_to_delete_the_last_project_with_a_400(personas):
    staging = Project.objects.create(organization=personas.org, name="Staging")
    owner = api_as(personas.owner)

    assert owner.delete(f"{API}/projects/{staging.uuid}").status_code == 204
    response = owner.delete(f"{API}/projects/{personas.project.uuid}")

    assert response.status_code == 400
    assert response.json() == {"detail": "An organization keeps at least one project; create another first."}
    assert list(personas.org.projects.all()) == [personas.project]


def test_the_page_refuses_to_delete_the_last_project_with_the_same_message(personas):
    response = client_as(personas.owner).post(
        f"/projects/{personas.project.uuid}/settings/", {"action": "delete", "confirm_name": "Production"}, follow=True,
    )

    assert "An organization keeps at least one project; create another first." in response.content.decode()
    assert Project.objects.filter(pk=personas.project.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_removals_of_the_last_two_projects_leave_one(personas):
    """A holds its removal open while B removes the other project: B must wait for A's lock and
    then see one project left. Without the lock B would count A's uncommitted deletion as still
    there, and both would pass."""
    first = personas.project
    second = Project.objects.create(organization=personas.org, name="Staging")
    a_removed, a_may_commit = threading.Event(), threading.Event()
    b_pid: list[int] = []
    outcomes: dict[str, object] = {}

    def remove_first() -> None:
        try:
            with transaction.atomic():
                first.remove(by=personas.owner)
                a_removed.set()
                a_may_commit.wait(timeout=30)
            outcomes["a"] = "removed"
        except ValidationError as error:
            outcomes["a"] = error
        finally:
            a_removed.set()
            connection.close()

    def remove_second() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            b_pid.append(cursor.fetchone()[0])
        try:
            second.remove(by=personas.owner)
            outcomes["b"] = "removed"
        except ValidationError as error:
            outcomes["b"] = error
        finally:
            connection.close()

    a = threading.Thread(target=remove_first)
    a.start()
    assert a_removed.wait(timeout=30)
    b = threading.Thread(target=remove_second)
    b.start()
    # Let A commit once B is either blocked on a lock or already done (which the lock prevents).
    observer = connections["default"]
    for _attempt in range(3000):
        if not b.is_alive():
            break
        if b_pid:
            with observer.cursor() as cursor:
                cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [b_pid[0]])
                row = cursor.fetchone()
            if row and row[0] == "Lock":
                break
        threading.Event().wait(0.01)
    a_may_commit.set()
    a.join(timeout=30)
    b.join(timeout=30)

    assert outcomes["a"] == "removed"
    assert isinstance(outcomes["b"], LastProjectError), outcomes
    assert list(Project.objects.filter(organization=personas.org)) == [second]


# ---------------------------------------------------------------------------------------------
# Who adds projects, withdraws invitations, deletes the organization
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("persona", "allowed"), [("owner", True), ("admin", True), ("member", False), ("viewer", False)])
def test_adding_a_project_needs_an_admin(personas, persona, allowed):
    if allowed:
        assert Project.create_in(personas.org, name="New", by=personas.user(persona)).organization == personas.org
    else:
        with pytest.raises(PermissionDenied, match="admin role"):
            Project.create_in(personas.org, name="New", by=personas.user(persona))
        assert not personas.org.projects.filter(name="New").exists()


@pytest.mark.parametrize(("persona", "allowed"), [("owner", True), ("admin", True), ("member", False), ("viewer", False)])
def test_withdrawing_an_invitation_needs_an_admin(personas, persona, allowed):
    invitation, _raw = Invitation.issue(personas.org, "new@a.example", Role.MEMBER, by=personas.owner)
    if allowed:
        invitation.withdraw(by=personas.user(persona))
        assert not Invitation.objects.filter(pk=invitation.pk).exists()
    else:
        with pytest.raises(PermissionDenied, match="admin role"):
            invitation.withdraw(by=personas.user(persona))
        assert Invitation.objects.filter(pk=invitation.pk).exists()


def test_a_member_cannot_withdraw_an_invitation_on_the_page_or_the_api(personas):
    invitation, _raw = Invitation.issue(personas.org, "new@a.example", Role.MEMBER, by=personas.owner)
    member = personas.member

    page = client_as(member).post(f"/orgs/{personas.org.uuid}/invitations/{invitation.uuid}/revoke/")
    api = api_as(member).delete(f"{API}/organizations/{personas.org.uuid}/invitations/{invitation.uuid}")

    assert (page.status_code, api.status_code) == (403, 403)
    assert Invitation.objects.filter(pk=invitation.pk).exists()


@pytest.mark.parametrize("persona", ["admin", "member", "viewer"])
def test_only_an_owner_removes_the_organization(personas, persona):
    with pytest.raises(PermissionDenied, match="owner role"):
        personas.org.remove(by=personas.user(persona))

    assert Organization.objects.filter(pk=personas.org.pk).exists()
    personas.org.remove(by=personas.owner)
    assert not Organization.objects.filter(pk=personas.org.pk).exists()


# ---------------------------------------------------------------------------------------------
# People manage; tokens only read and write data
# ---------------------------------------------------------------------------------------------
def test_the_models_refuse_a_token_as_the_actor(personas):
    _client, token = write_token(personas)
    membership = Membership.objects.get(organization=personas.org, user=personas.member)
    invitation, _raw = Invitation.issue(personas.org, "new@a.example", Role.MEMBER, by=personas.owner)
    refused = {
        "issue a token": lambda: ApiToken.issue(project=personas.project, name="more", scopes=["write"], by=token),
        "revoke a token": lambda: token.revoke(by=token),
        "invite": lambda: Invitation.issue(personas.org, "x@a.example", Role.MEMBER, by=token),
        "change a role": lambda: membership.change_role(Role.ADMIN, by=token),
        "remove a member": lambda: membership.remove(by=token),
        "delete the organization": lambda: personas.org.remove(by=token),
        "add a project": lambda: Project.create_in(personas.org, name="New", by=token),
        "withdraw an invitation": lambda: invitation.withdraw(by=token),
    }
    for action, attempt in refused.items():
        with pytest.raises(PermissionDenied):
            attempt()
            pytest.fail(f"a token could {action}")

    token.refresh_from_db()
    membership.refresh_from_db()
    assert token.revoked_at is None and membership.role == Role.MEMBER
    assert ApiToken.objects.count() == 1 and Invitation.objects.count() == 1


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("POST", "/projects/{project}/tokens", {"name": "more", "scopes": ["write"]}),
        ("DELETE", "/projects/{project}/tokens/{token}", None),
        ("POST", "/organizations/{org}/invitations", {"email": "x@a.example"}),
        ("PATCH", "/organizations/{org}/members/{membership}", {"role": "admin"}),
        ("DELETE", "/organizations/{org}/members/{membership}", None),
        ("DELETE", "/organizations/{org}", None),
    ],
)
def test_a_write_token_gets_403_from_the_api_for_what_only_people_do(personas, method, url, body):
    client, token = write_token(personas)
    membership = Membership.objects.get(organization=personas.org, user=personas.member)
    url = url.format(project=personas.project.uuid, token=token.uuid, org=personas.org.uuid, membership=membership.uuid)

    response = client.generic(method, f"{API}{url}", data="" if body is None else json.dumps(body),
                              content_type="application/json")

    assert response.status_code == 403, response.content
    token.refresh_from_db()
    assert token.revoked_at is None
    assert ApiToken.objects.count() == 1 and Invitation.objects.count() == 0
    assert Membership.objects.get(pk=membership.pk).role == Role.MEMBER
