"""API token authentication, read as a specification.

A project's token (`Authorization: Bearer pk_live_…`) is never more than a member: `read` lets it
read, `write` (which implies `read`) lets it change data, and no scope lets it create
organizations, manage members, invite people or create and revoke tokens. A token sees only its
own project. Revoked, expired and unknown tokens get 401 with a reason. The raw token is shown
once, only its SHA-256 is stored, `last_used_at` is written at most once a minute, and each
token has its own request rate.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken, Invitation, Membership, Organization, Project, Role
from accounts.throttling import ApiTokenRateThrottle
from tests.conftest import Personas

pytestmark = pytest.mark.django_db

API = "/api/v1"


def bearer(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def urls(personas: Personas, **extra: str) -> dict[str, str]:
    acme = personas.org
    return {
        "org": str(acme.uuid),
        "project": str(personas.project.uuid),
        "other_project": str(personas.other_project.uuid),
        "membership": str(acme.memberships.get(user=personas.viewer).uuid),
        **extra,
    }


def fill(template: object, ids: dict[str, str]) -> object:
    """Replace {org}, {project}, … in a URL or in the string values of a JSON body."""
    if isinstance(template, str):
        return template.format(**ids)
    if isinstance(template, dict):
        return {key: fill(value, ids) for key, value in template.items()}
    if isinstance(template, list):
        return [fill(value, ids) for value in template]
    return template


def send(client: APIClient, method: str, url: str, body: dict | None = None):
    data = "" if body is None else json.dumps(body)
    return client.generic(method, API + url, data=data, content_type="application/json")


@pytest.fixture
def issue(personas: Personas):
    """issue(["read"]) -> (ApiToken, raw value) for Acme/Production, made by Acme's owner."""

    def _issue(scopes: list[str]) -> tuple[ApiToken, str]:
        return ApiToken.issue(project=personas.project, name="known", scopes=scopes, by=personas.owner)

    return _issue


def snapshot() -> tuple:
    return (
        sorted(Organization.objects.values_list("uuid", "name", "time_zone")),
        sorted(Project.objects.values_list("uuid", "name")),
        sorted(Membership.objects.values_list("uuid", "role")),
        sorted(Invitation.objects.values_list("uuid", "email")),
        sorted(ApiToken.objects.values_list("uuid", "revoked_at")),
    )


# ---------------------------------------------------------------------------------------------
# Authentication: who is it, and why not
# ---------------------------------------------------------------------------------------------
def test_me_for_a_token_is_its_project_and_organization(personas, token_client):
    client, token = token_client(["read", "ingest"])

    me = client.get(f"{API}/me").json()

    assert me["user"] is None
    assert me["token"]["uuid"] == str(token.uuid)
    assert me["token"]["scopes"] == ["ingest", "read"]
    assert (me["project"]["uuid"], me["project"]["name"]) == (str(personas.project.uuid), "Production")
    assert (me["organization"]["uuid"], me["organization"]["name"]) == (str(personas.org.uuid), "Acme")
    # Recording usage is writing data: an ingest token counts as a member (Organization.role_of).
    assert [(o["name"], o["role"]) for o in me["organizations"]] == [("Acme", "member")]


@pytest.mark.parametrize(("scopes", "role"), [(["read"], "viewer"), (["write"], "member")])
def test_a_token_is_a_viewer_or_at_most_a_member_whoever_made_it(token_client, scopes, role):
    client, _token = token_client(scopes)  # made by Acme's owner

    organizations = client.get(f"{API}/organizations").json()["results"]

    assert [(o["name"], o["role"]) for o in organizations] == [("Acme", role)]


def revoke(token: ApiToken) -> None:
    ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())


def expire(token: ApiToken) -> None:
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))


def wrong_secret(raw: str) -> str:
    return raw[:-4] + ("AAAA" if not raw.endswith("AAAA") else "BBBB")


# case: (how to spoil the token, the Authorization header from the raw token, part of the detail)
REFUSED = {
    "revoked": (revoke, lambda raw: f"Bearer {raw}", "revoked"),
    "expired": (expire, lambda raw: f"Bearer {raw}", "expired"),
    "a real prefix with the wrong secret": (None, lambda raw: f"Bearer {wrong_secret(raw)}", "invalid"),
    "a truncated token": (None, lambda raw: f"Bearer {raw[:-1]}", "invalid"),
    "garbage": (None, lambda raw: "Bearer garbage", "invalid"),
    "an unknown prefix": (None, lambda raw: "Bearer pk_live_" + "0" * 53, "invalid"),
    "no value after Bearer": (None, lambda raw: "Bearer", "no token"),
    "only spaces after Bearer": (None, lambda raw: "Bearer    ", "no token"),
    "another scheme": (None, lambda raw: f"Basic {raw}", "credentials"),
}


@pytest.mark.parametrize("case", list(REFUSED))
@pytest.mark.parametrize("url", ["/me", "/projects/{project}"])
def test_a_refused_token_gets_401_saying_why(personas, issue, case, url):
    spoil, header, reason = REFUSED[case]
    token, raw = issue(["read"])
    if spoil:
        spoil(token)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header(raw))

    response = client.get(API + url.format(**urls(personas)))

    assert response.status_code == 401, response.content
    assert reason in response.json()["detail"].lower()
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_a_token_revoked_through_the_api_stops_working(personas, token_client):
    member = APIClient()
    member.force_authenticate(personas.member)
    created = send(member, "POST", f"/projects/{personas.project.uuid}/tokens", {"name": "CI", "scopes": ["read"]})
    client = bearer(created.json()["token"])
    assert client.get(f"{API}/me").status_code == 200

    revoked = send(member, "DELETE", f"/projects/{personas.project.uuid}/tokens/{created.json()['uuid']}")

    assert revoked.status_code == 204
    assert ApiToken.objects.filter(uuid=created.json()["uuid"], revoked_at__isnull=False).exists()
    response = client.get(f"{API}/me")
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]


# ---------------------------------------------------------------------------------------------
# Scopes and the rights of a token
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("scopes", "method", "url", "body", "status", "missing"),
    [
        (["read"], "GET", "/projects/{project}", None, 200, None),
        (["write"], "GET", "/projects/{project}", None, 200, None),  # write implies read
        (["write"], "GET", "/projects/{project}/tokens", None, 200, None),
        (["ingest"], "GET", "/projects/{project}", None, 403, "read"),
        (["gateway"], "GET", "/organizations", None, 403, "read"),
        (["ingest", "gateway"], "GET", "/organizations/{org}/members", None, 403, "read"),
        (["read"], "PATCH", "/projects/{project}", {"name": "Live"}, 403, "write"),
        (["read"], "DELETE", "/projects/{project}", None, 403, "write"),
        (["read", "ingest"], "POST", "/projects", {"name": "X", "organization": "{org}"}, 403, "write"),
    ],
)
def test_a_token_needs_the_scope_for_the_method(personas, token_client, scopes, method, url, body, status, missing):
    client, _token = token_client(scopes)
    before = snapshot()

    ids = urls(personas)
    response = send(client, method, fill(url, ids), fill(body, ids))

    assert response.status_code == status, response.content
    if missing:
        assert response.json()["detail"] == f"This API token lacks the '{missing}' scope."
        assert snapshot() == before


# What a person does and a token never may, even with every scope.
PEOPLE_ONLY = {
    "create an organization": ("POST", "/organizations", {"name": "Token Corp"}),
    "rename the organization": ("PATCH", "/organizations/{org}", {"name": "Token Corp"}),
    "delete the organization": ("DELETE", "/organizations/{org}", None),
    "create a project (an admin's right)": ("POST", "/projects", {"name": "X", "organization": "{org}"}),
    "rename a project (an admin's right)": ("PATCH", "/projects/{project}", {"name": "Live"}),
    "delete a project (an admin's right)": ("DELETE", "/projects/{project}", None),
    "change a member's role": ("PATCH", "/organizations/{org}/members/{membership}", {"role": "member"}),
    "remove a member": ("DELETE", "/organizations/{org}/members/{membership}", None),
    "invite someone": ("POST", "/organizations/{org}/invitations", {"email": "new@a.example"}),
    "withdraw an invitation": ("DELETE", "/organizations/{org}/invitations/{invitation}", None),
    "create a token": ("POST", "/projects/{project}/tokens", {"name": "child", "scopes": ["read"]}),
    "revoke a token": ("DELETE", "/projects/{project}/tokens/{token}", None),
    "revoke itself": ("DELETE", "/projects/{project}/tokens/{self}", None),
}


@pytest.mark.parametrize("action", list(PEOPLE_ONLY))
def test_a_token_with_every_scope_cannot_manage_people_or_tokens(personas, token_client, action):
    method, url, body = PEOPLE_ONLY[action]
    client, token = token_client(["read", "write", "ingest", "gateway"])
    invitation, _raw = Invitation.issue(personas.org, "invitee@a.example", Role.MEMBER, by=personas.owner)
    other, _raw = ApiToken.issue(project=personas.project, name="other", scopes=["read"], by=personas.member)
    ids = urls(personas, invitation=str(invitation.uuid), token=str(other.uuid), self=str(token.uuid))
    before = snapshot()

    response = send(client, method, fill(url, ids), fill(body, ids))

    assert response.status_code == 403, response.content
    assert response.json()["detail"]
    assert snapshot() == before


def test_a_write_token_reads_everything_a_member_reads(personas, token_client):
    client, _token = token_client(["write"])
    ids = urls(personas)

    for url in ["/organizations/{org}", "/organizations/{org}/members", "/organizations/{org}/invitations",
                "/projects", "/projects/{project}", "/projects/{project}/tokens"]:
        assert client.get(API + url.format(**ids)).status_code == 200, url


# ---------------------------------------------------------------------------------------------
# A token sees only its own project
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "/projects/{staging}",
        "/projects/{staging}/tokens",
        "/projects/{staging}/tokens/{staging_token}",
        "/projects/{other_project}",
        "/projects/{other_project}/tokens",
        "/organizations/{other_org}",
        "/organizations/{other_org}/members",
    ],
)
def test_a_project_token_gets_404_for_any_other_project(personas, token_client, url):
    staging = Project.objects.create(organization=personas.org, name="Staging")
    staging_token, _raw = ApiToken.issue(project=staging, name="staging", scopes=["read"], by=personas.owner)
    client, _token = token_client(["read", "write"])
    ids = urls(personas, staging=str(staging.uuid), staging_token=str(staging_token.uuid),
               other_org=str(personas.other_org.uuid))

    response = client.get(API + url.format(**ids))

    assert response.status_code == 404
    assert "Staging" not in response.content.decode()


def test_a_project_token_lists_only_its_own_project_and_tokens(personas, token_client):
    staging = Project.objects.create(organization=personas.org, name="Staging")
    ApiToken.issue(project=staging, name="staging", scopes=["read"], by=personas.owner)
    client, token = token_client(["read"])

    projects = client.get(f"{API}/projects").json()["results"]
    tokens = client.get(f"{API}/projects/{personas.project.uuid}/tokens").json()["results"]

    assert [p["name"] for p in projects] == ["Production"]
    assert [t["uuid"] for t in tokens] == [str(token.uuid)]


def test_an_organization_wide_token_sees_every_project_of_its_organization_only(personas, token_client):
    Project.objects.create(organization=personas.org, name="Staging")
    client, token = token_client(["read"])
    ApiToken.objects.filter(pk=token.pk).update(project=None)

    projects = client.get(f"{API}/projects").json()["results"]

    assert [p["name"] for p in projects] == ["Production", "Staging"]


# ---------------------------------------------------------------------------------------------
# The secret: shown once, stored only as a hash
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def created(personas: Personas) -> tuple[APIClient, dict]:
    """The member creates a token through the API: (the member's client, the 201 body)."""
    member = APIClient()
    member.force_authenticate(personas.member)
    response = send(member, "POST", f"/projects/{personas.project.uuid}/tokens",
                    {"name": "CI", "scopes": ["write", "read"]})
    assert response.status_code == 201, response.content
    return member, response.json()


def test_the_raw_token_is_returned_once_at_creation(personas, created):
    _member, body = created

    raw = body["token"]

    assert raw.startswith("pk_live_") and len(raw) > 50
    assert raw.startswith(body["prefix"])
    assert body["scopes"] == ["read", "write"]
    assert body["project"] == str(personas.project.uuid)
    assert body["is_active"] is True and body["last_used_at"] is None


def test_the_raw_token_never_appears_again(personas, created):
    member, body = created
    raw = body["token"]
    tokens = f"/projects/{personas.project.uuid}/tokens"

    later = [
        send(member, "GET", tokens),
        send(member, "GET", f"{tokens}/{body['uuid']}"),
        bearer(raw).get(f"{API}/me"),
        send(bearer(raw), "GET", f"{tokens}/{body['uuid']}"),
    ]

    for response in later:
        assert response.status_code == 200
        assert raw not in response.content.decode()
        assert '"token":"pk_live_' not in response.content.decode().replace(" ", "")


def test_only_the_sha256_of_the_token_is_stored(created):
    _member, body = created
    raw = body["token"]

    row = ApiToken.objects.filter(uuid=body["uuid"]).values().get()

    assert row["secret_hash"] == hashlib.sha256(raw.encode()).hexdigest()
    assert not [field for field, value in row.items() if raw in str(value)]
    assert raw[len(body["prefix"]):] not in str(row)  # nor the secret part alone
    assert bearer(raw).get(f"{API}/me").status_code == 200  # and the hash is enough to check it


# ---------------------------------------------------------------------------------------------
# last_used_at: written on first use, then at most once a minute
# ---------------------------------------------------------------------------------------------
def updates_of_api_tokens(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries
            if q["sql"].startswith("UPDATE") and "accounts_apitoken" in q["sql"]]


def test_last_used_at_is_written_on_first_use(token_client):
    client, token = token_client(["read"])
    assert token.last_used_at is None

    with CaptureQueriesContext(connection) as queries:
        assert client.get(f"{API}/me").status_code == 200

    token.refresh_from_db()
    assert token.last_used_at is not None
    assert timezone.now() - token.last_used_at < timedelta(seconds=30)
    assert len(updates_of_api_tokens(queries)) == 1


def test_last_used_at_is_not_rewritten_within_a_minute(token_client):
    client, token = token_client(["read"])
    client.get(f"{API}/me")
    token.refresh_from_db()
    first_use = token.last_used_at

    with CaptureQueriesContext(connection) as queries:
        assert client.get(f"{API}/me").status_code == 200
        assert client.get(f"{API}/projects").status_code == 200

    token.refresh_from_db()
    assert token.last_used_at == first_use
    assert updates_of_api_tokens(queries) == []


def test_last_used_at_is_written_again_after_a_minute(token_client):
    client, token = token_client(["read"])
    long_ago = timezone.now() - ApiToken.LAST_USED_RESOLUTION - timedelta(seconds=1)
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=long_ago)

    client.get(f"{API}/me")

    token.refresh_from_db()
    assert token.last_used_at > long_ago


def test_a_refused_token_is_not_marked_as_used(issue):
    token, raw = issue(["read"])
    revoke(token)

    assert bearer(raw).get(f"{API}/me").status_code == 401

    assert ApiToken.objects.get(pk=token.pk).last_used_at is None


# ---------------------------------------------------------------------------------------------
# Rate limits, per token
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def three_requests_a_minute(monkeypatch: pytest.MonkeyPatch) -> int:
    """DRF reads DEFAULT_THROTTLE_RATES when the throttle module is imported, so overriding
    the setting would do nothing: patch the throttle class's copy instead."""
    monkeypatch.setattr(ApiTokenRateThrottle, "THROTTLE_RATES", {"api_token": "3/min"})
    return 3


def test_a_token_over_its_rate_gets_429(token_client, three_requests_a_minute):
    client, _token = token_client(["read"])

    statuses = [client.get(f"{API}/me").status_code for _ in range(three_requests_a_minute + 1)]

    assert statuses == [200] * three_requests_a_minute + [429]
    response = client.get(f"{API}/projects")
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert "throttled" in response.json()["detail"].lower()


def test_each_token_has_its_own_rate(personas, token_client, three_requests_a_minute):
    busy, _token = token_client(["read"])
    quiet, _token = token_client(["read"])
    person = APIClient()
    person.force_authenticate(personas.owner)  # made both tokens; has a rate of their own

    for _ in range(three_requests_a_minute + 1):
        busy.get(f"{API}/me")

    assert busy.get(f"{API}/me").status_code == 429
    assert quiet.get(f"{API}/me").status_code == 200
    assert person.get(f"{API}/me").status_code == 200
