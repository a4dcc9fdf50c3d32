"""The REST API's tenancy, read as a specification: for every tenant-owned endpoint and method.

The personas of tests/conftest.py are an owner, an admin, a member and a viewer of "Acme", and
an outsider who owns "Bravo". For each endpoint and method:

- those whose role allows it get a 2xx and the database really changes;
- a weaker role gets 403 and nothing changes;
- the outsider gets 404, exactly as for an object that does not exist (never 403, which would
  tell them it does);
- an anonymous caller gets 401, the wrong method 405, a malformed UUID 404 (not 500), and bad
  input 400 with a message on the offending field.

The rights: a viewer reads everything in its organization; a member also creates and revokes
API tokens; an admin also creates, renames and deletes projects, manages members (not owners)
and invitations, and edits the organization; only an owner grants or takes away the owner role
and deletes the organization. The last owner can be neither demoted nor removed, and anyone
may leave. Token authentication has its own specification in test_api_tokens.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import (
    ApiToken,
    Invitation,
    Membership,
    Organization,
    Project,
    Role,
    User,
)
from tests.conftest import Personas, make_user

pytestmark = pytest.mark.django_db

API = "/api/v1"
NOT_A_UUID = "not-a-uuid"
PERSONAS = ["owner", "admin", "member", "viewer", "outsider"]


# ---------------------------------------------------------------------------------------------
# The world every test addresses
# ---------------------------------------------------------------------------------------------
@dataclass
class World:
    """The personas plus one object of each kind in Acme (and in Bravo, for cross-tenant ids)."""

    personas: Personas
    bystander: User  # a second viewer of Acme: the target of role changes and removals
    staging: Project  # Acme's second project
    invitation: Invitation
    token: ApiToken  # on Acme/Production, made by the member
    other_invitation: Invitation
    other_token: ApiToken

    @property
    def org(self) -> Organization:
        return self.personas.org

    def user(self, name: str) -> User:
        return self.bystander if name == "bystander" else self.personas.user(name)

    def membership_of(self, user: User, organization: Organization | None = None) -> Membership:
        return (organization or self.org).memberships.get(user=user)

    def ids(self) -> dict[str, str]:
        p = self.personas
        return {
            "org": str(p.org.uuid),
            "project": str(p.project.uuid),
            "staging": str(self.staging.uuid),
            "membership": str(self.membership_of(self.bystander).uuid),
            "owner_membership": str(self.membership_of(p.owner).uuid),
            "invitation": str(self.invitation.uuid),
            "token": str(self.token.uuid),
            "other_org": str(p.other_org.uuid),
            "other_project": str(p.other_project.uuid),
            "other_membership": str(self.membership_of(p.outsider, p.other_org).uuid),
            "other_invitation": str(self.other_invitation.uuid),
            "other_token": str(self.other_token.uuid),
            "random": str(uuid.uuid4()),
            "bad": NOT_A_UUID,
        }

    def fill(self, template: object) -> object:
        """Replace {org}, {project}, … in a URL or in the string values of a JSON body."""
        if isinstance(template, str):
            return template.format(**self.ids())
        if isinstance(template, dict):
            return {key: self.fill(value) for key, value in template.items()}
        if isinstance(template, list):
            return [self.fill(value) for value in template]
        return template


@pytest.fixture
def world(personas: Personas) -> World:
    bystander = make_user("bystander@a.example")
    personas.org.add_member(bystander, Role.VIEWER)
    staging = Project.objects.create(organization=personas.org, name="Staging")
    invitation, _raw = Invitation.issue(personas.org, "invitee@a.example", Role.MEMBER, by=personas.owner)
    token, _raw = ApiToken.issue(project=personas.project, name="backend", scopes=["read"], by=personas.member)
    other_invitation, _raw = Invitation.issue(
        personas.other_org, "friend@b.example", Role.MEMBER, by=personas.outsider
    )
    other_token, _raw = ApiToken.issue(
        project=personas.other_project, name="bravo backend", scopes=["read"], by=personas.outsider
    )
    return World(
        personas=personas, bystander=bystander, staging=staging, invitation=invitation,
        token=token, other_invitation=other_invitation, other_token=other_token,
    )


def client_for(world: World, persona: str | None) -> APIClient:
    client = APIClient()
    if persona is not None:
        client.force_authenticate(world.personas.user(persona))
    return client


def call(client: APIClient, method: str, url: str, body: object = None):
    data = "" if body is None else json.dumps(body)
    return client.generic(method, url, data=data, content_type="application/json")


def send(world: World, persona: str | None, method: str, url: str, body: object = None):
    return call(client_for(world, persona), method, world.fill(url), world.fill(body))


def snapshot() -> tuple:
    """Everything the API could change, to prove a refused request changed nothing."""
    return (
        sorted(Organization.objects.values_list("uuid", "name", "time_zone")),
        sorted(Project.objects.values_list("uuid", "name")),
        sorted(Membership.objects.values_list("uuid", "role")),
        sorted(Invitation.objects.values_list("uuid", "email", "role")),
        sorted(ApiToken.objects.values_list("uuid", "name", "revoked_at")),
    )


def future(days: int = 30) -> str:
    return (timezone.now() + timedelta(days=days)).isoformat()


def past(days: int = 1) -> str:
    return (timezone.now() - timedelta(days=days)).isoformat()


# ---------------------------------------------------------------------------------------------
# The specification of every endpoint
# ---------------------------------------------------------------------------------------------
READS: dict[str, str] = {
    "organization": "/organizations/{org}",
    "members": "/organizations/{org}/members",
    "member": "/organizations/{org}/members/{membership}",
    "invitations": "/organizations/{org}/invitations",
    "invitation": "/organizations/{org}/invitations/{invitation}",
    "project": "/projects/{project}",
    "tokens": "/projects/{project}/tokens",
    "token": "/projects/{project}/tokens/{token}",
}


@dataclass(frozen=True)
class Write:
    method: str
    url: str
    body: dict | None
    minimum: Role  # the weakest role allowed to do it
    happened: Callable[[World], bool]  # True once the change is in the database
    outsider_status: int = 404

    @property
    def success_status(self) -> int:
        return {"POST": 201, "DELETE": 204}.get(self.method, 200)


WRITES: dict[str, Write] = {
    "rename the organization": Write(
        "PATCH", "/organizations/{org}", {"name": "Acme Corp"}, Role.ADMIN,
        lambda w: Organization.objects.get(pk=w.org.pk).name == "Acme Corp",
    ),
    "replace the organization": Write(
        "PUT", "/organizations/{org}", {"name": "Acme Corp", "time_zone": "Europe/London"}, Role.ADMIN,
        lambda w: Organization.objects.filter(pk=w.org.pk, name="Acme Corp", time_zone="Europe/London").exists(),
    ),
    "delete the organization": Write(
        "DELETE", "/organizations/{org}", None, Role.OWNER,
        lambda w: not Organization.objects.filter(pk=w.org.pk).exists(),
    ),
    "create a project": Write(
        "POST", "/projects", {"name": "Research", "organization": "{org}"}, Role.ADMIN,
        lambda w: w.org.projects.filter(name="Research").exists(),
        # The organization is in the body, not the path: to the outsider, Acme's id is as
        # unknown as a random one (see test_the_outsider_cannot_tell_acme_from_nothing).
        outsider_status=400,
    ),
    "rename a project": Write(
        "PATCH", "/projects/{project}", {"name": "Live"}, Role.ADMIN,
        lambda w: Project.objects.get(pk=w.personas.project.pk).name == "Live",
    ),
    "replace a project": Write(
        "PUT", "/projects/{project}", {"name": "Live"}, Role.ADMIN,
        lambda w: Project.objects.get(pk=w.personas.project.pk).name == "Live",
    ),
    "delete a project": Write(
        "DELETE", "/projects/{project}", None, Role.ADMIN,
        lambda w: not Project.objects.filter(pk=w.personas.project.pk).exists(),
    ),
    "change a member's role": Write(
        "PATCH", "/organizations/{org}/members/{membership}", {"role": "member"}, Role.ADMIN,
        lambda w: w.membership_of(w.bystander).role == Role.MEMBER,
    ),
    "replace a member": Write(
        "PUT", "/organizations/{org}/members/{membership}", {"role": "admin"}, Role.ADMIN,
        lambda w: w.membership_of(w.bystander).role == Role.ADMIN,
    ),
    "remove a member": Write(
        "DELETE", "/organizations/{org}/members/{membership}", None, Role.ADMIN,
        lambda w: not w.org.memberships.filter(user=w.bystander).exists(),
    ),
    "invite someone": Write(
        "POST", "/organizations/{org}/invitations", {"email": "new@a.example", "role": "viewer"}, Role.ADMIN,
        lambda w: w.org.invitations.filter(email="new@a.example", role=Role.VIEWER).exists(),
    ),
    "withdraw an invitation": Write(
        "DELETE", "/organizations/{org}/invitations/{invitation}", None, Role.ADMIN,
        lambda w: not Invitation.objects.filter(pk=w.invitation.pk).exists(),
    ),
    "create an API token": Write(
        "POST", "/projects/{project}/tokens", {"name": "CI", "scopes": ["read", "ingest"]}, Role.MEMBER,
        lambda w: w.personas.project.api_tokens.filter(name="CI", scopes=["ingest", "read"]).exists(),
    ),
    "revoke an API token": Write(
        "DELETE", "/projects/{project}/tokens/{token}", None, Role.MEMBER,
        lambda w: ApiToken.objects.get(pk=w.token.pk).revoked_at is not None,  # kept for the audit
    ),
}

# Every route and method the API answers, for the checks that hold everywhere.
ROUTES: list[tuple[str, str]] = [
    ("GET", "/me"),
    ("GET", "/organizations"),
    ("POST", "/organizations"),
    ("GET", "/projects"),
    *(("GET", url) for url in READS.values()),
    *((write.method, write.url) for write in WRITES.values()),
]

WRONG_METHODS: list[tuple[str, str]] = [
    ("POST", "/me"),
    ("DELETE", "/me"),
    ("PATCH", "/organizations"),
    ("DELETE", "/organizations"),
    ("POST", "/organizations/{org}"),
    ("POST", "/organizations/{org}/members"),  # people join by invitation only
    ("POST", "/organizations/{org}/members/{membership}"),
    ("PATCH", "/organizations/{org}/invitations/{invitation}"),
    ("PUT", "/organizations/{org}/invitations/{invitation}"),
    ("DELETE", "/organizations/{org}/invitations"),
    ("PUT", "/projects"),
    ("POST", "/projects/{project}"),
    ("PATCH", "/projects/{project}/tokens/{token}"),  # a token's name and scopes are fixed
    ("PUT", "/projects/{project}/tokens/{token}"),
    ("DELETE", "/projects/{project}/tokens"),
]


def expected_status(write: Write, persona: str) -> int:
    if persona == "outsider":
        return write.outsider_status
    role_of_persona = {"owner": Role.OWNER, "admin": Role.ADMIN, "member": Role.MEMBER, "viewer": Role.VIEWER}
    return write.success_status if role_of_persona[persona] >= write.minimum else 403


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", list(READS.values()), ids=list(READS))
@pytest.mark.parametrize("persona", ["owner", "admin", "member", "viewer"])
def test_everyone_in_the_organization_can_read(world, persona, url):
    response = send(world, persona, "GET", API + url)

    assert response.status_code == 200, response.content


@pytest.mark.parametrize("url", list(READS.values()), ids=list(READS))
def test_the_outsider_reads_404_exactly_as_for_something_that_does_not_exist(world, url):
    response = send(world, "outsider", "GET", API + url)
    # The same URL with every Acme id swapped for a random one.
    for_nothing = send(world, "outsider", "GET", API + url.replace("{org}", "{random}").replace(
        "{project}", "{random}"))

    assert response.status_code == 404
    assert response.json() == for_nothing.json()
    assert "Acme" not in response.content.decode()


@pytest.mark.parametrize("persona", PERSONAS)
def test_lists_show_only_the_callers_own_organizations_and_projects(world, persona):
    organizations = send(world, persona, "GET", f"{API}/organizations").json()["results"]
    projects = send(world, persona, "GET", f"{API}/projects").json()["results"]

    if persona == "outsider":
        assert [(o["name"], o["role"]) for o in organizations] == [("Bravo", "owner")]
        assert [p["name"] for p in projects] == ["Bravo prod"]
    else:
        assert [(o["name"], o["role"]) for o in organizations] == [("Acme", persona)]
        assert [p["name"] for p in projects] == ["Production", "Staging"]
        assert {p["organization"] for p in projects} == {str(world.org.uuid)}


def test_the_members_list_shows_everyone_with_their_role_name(world):
    members = send(world, "viewer", "GET", API + "/organizations/{org}/members").json()["results"]

    assert sorted((m["user"]["email"], m["role"]) for m in members) == [
        ("admin@a.example", "admin"),
        ("bystander@a.example", "viewer"),
        ("member@a.example", "member"),
        ("owner@a.example", "owner"),
        ("viewer@a.example", "viewer"),
    ]


def test_someone_in_two_organizations_sees_their_own_role_in_each(world):
    world.personas.other_org.add_member(world.personas.viewer, Role.ADMIN)

    listed = send(world, "viewer", "GET", f"{API}/organizations").json()["results"]
    me = send(world, "viewer", "GET", f"{API}/me").json()

    assert [(o["name"], o["role"]) for o in listed] == [("Acme", "viewer"), ("Bravo", "admin")]
    assert [(o["name"], o["role"]) for o in me["organizations"]] == [("Acme", "viewer"), ("Bravo", "admin")]


def test_me_for_a_signed_in_person_is_the_user_and_their_organizations(world):
    me = send(world, "admin", "GET", f"{API}/me").json()

    assert me["user"]["email"] == "admin@a.example"
    assert me["token"] is None and me["project"] is None and me["organization"] is None
    assert [(o["uuid"], o["name"], o["role"]) for o in me["organizations"]] == [
        (str(world.org.uuid), "Acme", "admin")
    ]


def test_a_real_browser_session_reads_but_must_send_the_csrf_token_to_write(world):
    """api_as()/force_authenticate skip the authentication classes; this goes through them."""
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(world.personas.admin)

    me = browser.get(f"{API}/me")
    write = call(browser, "PATCH", API + world.fill("/projects/{project}"), {"name": "Live"})

    assert me.status_code == 200 and me.json()["user"]["email"] == "admin@a.example"
    assert write.status_code == 403 and "CSRF" in write.json()["detail"]
    assert Project.objects.get(pk=world.personas.project.pk).name == "Production"


def test_the_token_list_and_detail_never_show_a_secret(world):
    listed = send(world, "viewer", "GET", API + "/projects/{project}/tokens").json()["results"]
    detail = send(world, "viewer", "GET", API + "/projects/{project}/tokens/{token}").json()

    assert [t["name"] for t in listed] == ["backend"]
    for shown in (listed[0], detail):
        assert shown["prefix"] == world.token.prefix
        assert "token" not in shown and "secret_hash" not in shown


# ---------------------------------------------------------------------------------------------
# Writing: the persona matrix
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("action", list(WRITES))
@pytest.mark.parametrize("persona", PERSONAS)
def test_who_may_change_what(world, persona, action):
    write = WRITES[action]
    expected = expected_status(write, persona)
    before = snapshot()

    response = send(world, persona, write.method, API + write.url, write.body)

    assert response.status_code == expected, response.content
    if expected < 300:
        assert write.happened(world)
    else:
        assert snapshot() == before
        assert not write.happened(world)
    if expected == 403:
        assert "role" in response.json()["detail"]  # says which role it needs
    if persona == "outsider":
        assert "Acme" not in response.content.decode()


# Creating under a parent in the path: the parent is looked up (404) and the caller's role
# checked (403) before the body is, so a refused caller never learns the validation rules.
NESTED_CREATES: dict[str, tuple[str, str, int]] = {
    # case: (persona, url, status)
    "outsider inviting to Acme": ("outsider", "/organizations/{org}/invitations", 404),
    "outsider inviting to nowhere": ("outsider", "/organizations/{random}/invitations", 404),
    "owner inviting to a malformed id": ("owner", "/organizations/{bad}/invitations", 404),
    "member inviting": ("member", "/organizations/{org}/invitations", 403),
    "viewer inviting": ("viewer", "/organizations/{org}/invitations", 403),
    "outsider creating an Acme token": ("outsider", "/projects/{project}/tokens", 404),
    "owner creating a token for a malformed id": ("owner", "/projects/{bad}/tokens", 404),
    "viewer creating a token": ("viewer", "/projects/{project}/tokens", 403),
}


@pytest.mark.parametrize("case", list(NESTED_CREATES))
@pytest.mark.parametrize("body", [{}, {"email": "not an email", "name": "", "scopes": ["nope"]}])
def test_a_refused_create_is_refused_whatever_the_body(world, case, body):
    persona, url, status = NESTED_CREATES[case]
    before = snapshot()

    response = send(world, persona, "POST", API + url, body)

    assert response.status_code == status, response.content
    assert snapshot() == before


def test_the_outsider_cannot_tell_acme_from_nothing_when_naming_it_in_a_body(world):
    """POST /projects names the organization in its body, so an unknown one is a 400 on that
    field, and Acme is exactly as unknown to the outsider as a random id."""
    unknown = str(uuid.uuid4())
    acme = send(world, "outsider", "POST", f"{API}/projects", {"name": "X", "organization": "{org}"})
    nothing = send(world, "outsider", "POST", f"{API}/projects", {"name": "X", "organization": unknown})

    assert acme.status_code == nothing.status_code == 400
    assert list(acme.json()) == list(nothing.json()) == ["organization"]
    acme_error, nothing_error = acme.json()["organization"][0], nothing.json()["organization"][0]
    assert acme_error.replace(str(world.org.uuid), "?") == nothing_error.replace(unknown, "?")


def test_creating_an_organization_makes_the_caller_its_owner_with_a_first_project(world):
    response = send(world, "viewer", "POST", f"{API}/organizations", {"name": "Side project", "time_zone": "Asia/Tokyo"})

    assert response.status_code == 201, response.content
    assert response.json()["role"] == "owner"
    created = Organization.objects.get(uuid=response.json()["uuid"])
    assert (created.name, created.time_zone) == ("Side project", "Asia/Tokyo")
    assert created.role_of(world.personas.viewer) == Role.OWNER
    assert created.projects.count() == 1


def test_a_new_invitation_is_emailed_and_defaults_to_the_member_role(world):
    mail.outbox.clear()

    response = send(world, "admin", "POST", API + "/organizations/{org}/invitations", {"email": "New@A.example"})

    assert response.status_code == 201, response.content
    assert response.json()["role"] == "member"
    assert response.json()["status"] == "pending"
    invitation = world.org.invitations.get(email="new@a.example")
    assert invitation.role == Role.MEMBER
    assert [message.to for message in mail.outbox] == [["new@a.example"]]


def test_a_new_project_is_returned_with_its_organization(world):
    response = send(world, "admin", "POST", f"{API}/projects", {"name": "Research", "organization": "{org}"})

    assert response.status_code == 201
    assert response.json()["organization"] == str(world.org.uuid)
    assert Project.objects.get(uuid=response.json()["uuid"]).organization == world.org


def test_a_project_never_moves_to_another_organization(world):
    world.personas.other_org.add_member(world.personas.owner, Role.OWNER)

    response = send(world, "owner", "PATCH", API + "/projects/{project}", {"organization": "{other_org}"})

    assert response.status_code == 200
    assert Project.objects.get(pk=world.personas.project.pk).organization == world.org


# ---------------------------------------------------------------------------------------------
# Owners, the last owner, and leaving
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("actor", "method", "target", "body", "status", "role_after"),
    [
        # Only an owner grants the owner role…
        ("admin", "PATCH", "bystander", {"role": "owner"}, 403, Role.VIEWER),
        ("owner", "PATCH", "bystander", {"role": "owner"}, 200, Role.OWNER),
        # …or takes it away, or removes an owner.
        ("admin", "PATCH", "owner", {"role": "admin"}, 403, Role.OWNER),
        ("admin", "DELETE", "owner", None, 403, Role.OWNER),
        # An admin manages admins and everyone below.
        ("admin", "PATCH", "member", {"role": "admin"}, 200, Role.ADMIN),
        ("admin", "PATCH", "admin", {"role": "viewer"}, 200, Role.VIEWER),
        # No one promotes themselves.
        ("member", "PATCH", "member", {"role": "admin"}, 403, Role.MEMBER),
        ("viewer", "PATCH", "viewer", {"role": "member"}, 403, Role.VIEWER),
        # A member cannot remove anyone else.
        ("member", "DELETE", "viewer", None, 403, Role.VIEWER),
        # Anyone may leave.
        ("viewer", "DELETE", "viewer", None, 204, None),
        ("member", "DELETE", "member", None, 204, None),
        ("admin", "DELETE", "admin", None, 204, None),
    ],
)
def test_role_changes_and_removals(world, actor, method, target, body, status, role_after):
    membership = world.membership_of(world.user(target))
    url = f"{API}/organizations/{{org}}/members/{membership.uuid}"

    response = send(world, actor, method, url, body)

    assert response.status_code == status, response.content
    remaining = Membership.objects.filter(pk=membership.pk).values_list("role", flat=True).first()
    assert remaining == role_after
    if status == 200:
        assert response.json()["role"] == Role(role_after).name.lower()


@pytest.mark.parametrize(
    ("method", "body"), [("PATCH", {"role": "admin"}), ("PUT", {"role": "viewer"}), ("DELETE", None)]
)
def test_the_last_owner_can_be_neither_demoted_nor_removed(world, method, body):
    url = API + "/organizations/{org}/members/{owner_membership}"

    response = send(world, "owner", method, url, body)

    assert response.status_code == 400
    assert "last owner" in str(response.json()).lower()
    assert world.membership_of(world.personas.owner).role == Role.OWNER


@pytest.mark.parametrize(
    ("method", "body", "status"), [("PATCH", {"role": "admin"}, 200), ("DELETE", None, 204)]
)
def test_an_owner_may_step_down_or_leave_once_there_is_another_owner(world, method, body, status):
    world.membership_of(world.personas.admin).change_role(Role.OWNER, by=world.personas.owner)

    response = send(world, "owner", method, API + "/organizations/{org}/members/{owner_membership}", body)

    assert response.status_code == status, response.content
    assert world.org.role_of(world.personas.owner) == {"PATCH": Role.ADMIN, "DELETE": None}[method]


def test_an_owner_may_remove_another_owner(world):
    world.membership_of(world.personas.admin).change_role(Role.OWNER, by=world.personas.owner)
    url = f"{API}/organizations/{{org}}/members/{world.membership_of(world.personas.admin).uuid}"

    response = send(world, "owner", "DELETE", url)

    assert response.status_code == 204
    assert world.org.role_of(world.personas.admin) is None


@pytest.mark.parametrize(("actor", "status"), [("admin", 403), ("owner", 201)])
def test_only_an_owner_invites_an_owner(world, actor, status):
    body = {"email": "cofounder@a.example", "role": "owner"}

    response = send(world, actor, "POST", API + "/organizations/{org}/invitations", body)

    assert response.status_code == status, response.content
    assert world.org.invitations.filter(email="cofounder@a.example").exists() == (status == 201)


# ---------------------------------------------------------------------------------------------
# The checks that hold everywhere: 401, 405, malformed and cross-tenant ids
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "url"), ROUTES, ids=[f"{m} {u}" for m, u in ROUTES])
def test_an_anonymous_caller_gets_401(world, method, url):
    before = snapshot()

    response = send(world, None, method, API + url, {})

    assert response.status_code == 401
    assert response.json()["detail"]
    assert snapshot() == before


@pytest.mark.parametrize(("method", "url"), WRONG_METHODS, ids=[f"{m} {u}" for m, u in WRONG_METHODS])
def test_the_wrong_method_gets_405(world, method, url):
    before = snapshot()

    response = send(world, "owner", method, API + url, {})

    assert response.status_code == 405
    assert snapshot() == before


MALFORMED: list[tuple[str, str, dict | None]] = [
    ("GET", "/organizations/{bad}", None),
    ("PATCH", "/organizations/{bad}", {"name": "X"}),
    ("PUT", "/organizations/{bad}", {"name": "X"}),
    ("DELETE", "/organizations/{bad}", None),
    ("GET", "/organizations/{bad}/members", None),
    ("GET", "/organizations/{org}/members/{bad}", None),
    ("PATCH", "/organizations/{org}/members/{bad}", {"role": "viewer"}),
    ("PUT", "/organizations/{org}/members/{bad}", {"role": "viewer"}),
    ("DELETE", "/organizations/{org}/members/{bad}", None),
    ("GET", "/organizations/{bad}/members/{membership}", None),
    ("GET", "/organizations/{bad}/invitations", None),
    ("POST", "/organizations/{bad}/invitations", {"email": "new@a.example"}),
    ("GET", "/organizations/{org}/invitations/{bad}", None),
    ("DELETE", "/organizations/{org}/invitations/{bad}", None),
    ("GET", "/projects/{bad}", None),
    ("PATCH", "/projects/{bad}", {"name": "X"}),
    ("PUT", "/projects/{bad}", {"name": "X"}),
    ("DELETE", "/projects/{bad}", None),
    ("GET", "/projects/{bad}/tokens", None),
    ("POST", "/projects/{bad}/tokens", {"name": "CI", "scopes": ["read"]}),
    ("GET", "/projects/{project}/tokens/{bad}", None),
    ("DELETE", "/projects/{project}/tokens/{bad}", None),
]


@pytest.mark.parametrize(("method", "url", "body"), MALFORMED, ids=[f"{m} {u}" for m, u, _ in MALFORMED])
def test_a_malformed_uuid_is_404_not_500(world, method, url, body):
    before = snapshot()

    response = send(world, "owner", method, API + url, body)

    assert response.status_code == 404
    assert snapshot() == before


# An Acme owner addressing Bravo's objects, or Acme objects under the wrong parent.
CROSS_TENANT: list[tuple[str, str]] = [
    ("GET", "/organizations/{other_org}"),
    ("GET", "/organizations/{org}/members/{other_membership}"),
    ("PATCH", "/organizations/{org}/members/{other_membership}"),
    ("DELETE", "/organizations/{org}/members/{other_membership}"),
    ("GET", "/organizations/{other_org}/members/{membership}"),
    ("GET", "/organizations/{org}/invitations/{other_invitation}"),
    ("DELETE", "/organizations/{org}/invitations/{other_invitation}"),
    ("GET", "/projects/{other_project}"),
    ("DELETE", "/projects/{other_project}"),
    ("GET", "/projects/{project}/tokens/{other_token}"),
    ("DELETE", "/projects/{project}/tokens/{other_token}"),
    ("GET", "/projects/{other_project}/tokens/{other_token}"),
    ("GET", "/projects/{staging}/tokens/{token}"),  # Acme's token, under the wrong project
    ("DELETE", "/projects/{staging}/tokens/{token}"),
]


@pytest.mark.parametrize(("method", "url"), CROSS_TENANT, ids=[f"{m} {u}" for m, u in CROSS_TENANT])
def test_an_object_under_the_wrong_parent_is_404(world, method, url):
    before = snapshot()

    response = send(world, "owner", method, API + url, {"role": "owner"} if method == "PATCH" else None)

    assert response.status_code == 404
    assert snapshot() == before


# ---------------------------------------------------------------------------------------------
# Bad input: 400 with a message on the field
# ---------------------------------------------------------------------------------------------
BAD_INPUT: dict[str, tuple[str, str, dict, str, str]] = {
    # case: (method, url, body, field, part of the message)
    "organization without a name": ("POST", "/organizations", {"time_zone": "UTC"}, "name", "required"),
    "organization in an unknown time zone": (
        "POST", "/organizations", {"name": "X", "time_zone": "Mars/Olympus_Mons"}, "time_zone", "time zone",
    ),
    "organization renamed to nothing": ("PATCH", "/organizations/{org}", {"name": ""}, "name", "blank"),
    "organization moved to an unknown time zone": (
        "PATCH", "/organizations/{org}", {"time_zone": "Mars/Olympus_Mons"}, "time_zone", "time zone",
    ),
    "project without a name": ("POST", "/projects", {"organization": "{org}"}, "name", "required"),
    "project without an organization": ("POST", "/projects", {"name": "X"}, "organization", "required"),
    "project in a malformed organization": (
        "POST", "/projects", {"name": "X", "organization": NOT_A_UUID}, "organization", "",
    ),
    "project named like another, in another case": (
        "POST", "/projects", {"name": "PRODUCTION", "organization": "{org}"}, "name", "already has a project",
    ),
    "project renamed like another": ("PATCH", "/projects/{project}", {"name": "staging"}, "name", "already has a project"),
    "project renamed to nothing": ("PATCH", "/projects/{project}", {"name": ""}, "name", "blank"),
    "member given an unknown role": (
        "PATCH", "/organizations/{org}/members/{membership}", {"role": "boss"}, "role", "not a valid choice",
    ),
    "member given a role number": (
        "PATCH", "/organizations/{org}/members/{membership}", {"role": 30}, "role", "not a valid choice",
    ),
    "member replaced without a role": ("PUT", "/organizations/{org}/members/{membership}", {}, "role", "required"),
    "invitation to a malformed email": (
        "POST", "/organizations/{org}/invitations", {"email": "not an email"}, "email", "valid email",
    ),
    "invitation with an unknown role": (
        "POST", "/organizations/{org}/invitations", {"email": "new@a.example", "role": "boss"}, "role", "not a valid choice",
    ),
    "invitation for someone already a member": (
        "POST", "/organizations/{org}/invitations", {"email": "Member@a.example"}, "email", "already a member",
    ),
    "token without a name": ("POST", "/projects/{project}/tokens", {"scopes": ["read"]}, "name", "required"),
    "token without scopes": ("POST", "/projects/{project}/tokens", {"name": "CI", "scopes": []}, "scopes", "empty"),
    "token with an unknown scope": (
        "POST", "/projects/{project}/tokens", {"name": "CI", "scopes": ["read", "admin"]}, "scopes", "not a valid choice",
    ),
    "token expiring in the past": (
        "POST", "/projects/{project}/tokens", {"name": "CI", "scopes": ["read"], "expires_at": past()},
        "expires_at", "future",
    ),
    "token expiring on a malformed date": (
        "POST", "/projects/{project}/tokens", {"name": "CI", "scopes": ["read"], "expires_at": "next week"},
        "expires_at", "format",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_400_with_a_message_on_the_field(world, case):
    method, url, body, field, message = BAD_INPUT[case]
    before = snapshot()

    response = send(world, "owner", method, API + url, body)

    assert response.status_code == 400, response.content
    errors = response.json()
    assert field in errors, errors
    assert message.lower() in " ".join(map(str, errors[field])).lower(), errors
    assert snapshot() == before


def test_a_token_expiring_in_the_future_is_accepted(world):
    response = send(
        world, "member", "POST", API + "/projects/{project}/tokens",
        {"name": "CI", "scopes": ["read"], "expires_at": future()},
    )

    assert response.status_code == 201, response.content
    assert ApiToken.objects.get(uuid=response.json()["uuid"]).expires_at > timezone.now()


def test_the_same_project_name_is_fine_in_another_organization(world):
    response = send(world, "outsider", "POST", f"{API}/projects", {"name": "Production", "organization": "{other_org}"})

    assert response.status_code == 201, response.content
