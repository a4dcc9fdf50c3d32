"""Inviting people to an organization by email, and accepting by signing up or signing in."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from accounts.models import Invitation, Membership, Organization, Role, User
from accounts.tasks import expire_invitations
from tests.conftest import PASSWORD, Personas, make_user
from tests.outbox import html_of, link_in, only_email_to, signed_in_user

pytestmark = pytest.mark.django_db



# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def invite(
    client, personas: Personas, email: str, role: Role = Role.MEMBER, *, by: str = "admin"
) -> str:
    """`by` invites `email` through the organization page; returns the emailed accept link."""
    client.force_login(personas.user(by))
    mail.outbox.clear()
    response = client.post(
        f"/orgs/{personas.org.uuid}/invitations/", {"email": email, "role": str(role)}
    )
    assert response.status_code == 302
    link = link_in(only_email_to(email.lower()), "/invitations/")
    client.logout()
    return link


def role_in_acme(personas: Personas, email: str) -> Role | None:
    membership = Membership.objects.filter(
        organization=personas.org, user__email__iexact=email
    ).first()
    return Role(membership.role) if membership else None


def acme_dashboard(personas: Personas) -> str:
    return f"/projects/{personas.project.uuid}/"


# ---------------------------------------------------------------------------------------------
# The invitation email
# ---------------------------------------------------------------------------------------------
def test_an_admin_invites_an_email_with_a_role_and_one_email_goes_out(client, personas):
    link = invite(client, personas, "casey@x.example", Role.VIEWER)

    message = only_email_to("casey@x.example")
    assert len(mail.outbox) == 1
    assert message.subject == "admin@a.example invited you to Acme on Pulse"
    for part in (message.body, html_of(message)):
        assert "Acme" in part
        assert "viewer" in part
        assert "casey@x.example" in part
    assert link.startswith("/invitations/")
    invitation = Invitation.objects.get(email="casey@x.example")
    assert invitation.role == Role.VIEWER
    assert invitation.expires_at > timezone.now() + timedelta(days=6)
    # Only a hash of the link's secret is stored.
    assert link.strip("/").rsplit("/", 1)[-1] != invitation.token_hash


def test_the_invitation_email_shows_names_as_typed_in_plain_text_and_escaped_in_html(
    client, personas
):
    personas.org.name = "R&D <Labs>"
    personas.org.save()
    personas.admin.first_name, personas.admin.last_name = "Aoife", "O'Brien"
    personas.admin.save()

    invite(client, personas, "casey@x.example")

    message = only_email_to("casey@x.example")
    assert message.subject == "Aoife O'Brien invited you to R&D <Labs> on Pulse"
    assert "Aoife O'Brien invited you to join R&D <Labs> on Pulse" in message.body
    assert "R&amp;D &lt;Labs&gt;" in html_of(message)
    assert "<Labs>" not in html_of(message)


def test_inviting_an_existing_member_is_a_form_error(client, personas):
    client.force_login(personas.admin)

    response = client.post(
        f"/orgs/{personas.org.uuid}/invitations/",
        {"email": "Member@A.example", "role": str(Role.ADMIN)},
        follow=True,
    )

    assert response.status_code == 200
    assert "member@a.example is already a member of Acme." in response.content.decode()
    assert not Invitation.objects.exists()
    assert mail.outbox == []


# ---------------------------------------------------------------------------------------------
# Accepting
# ---------------------------------------------------------------------------------------------
def test_an_anonymous_visitor_is_asked_to_sign_up_or_sign_in(client, personas):
    link = invite(client, personas, "casey@x.example")

    page = client.get(link)

    assert page.status_code == 200
    html = page.content.decode()
    assert "Join Acme" in html
    assert 'href="/accounts/signup/"' in html
    assert 'href="/accounts/login/"' in html
    assert "Accept and join" not in html
    assert role_in_acme(personas, "casey@x.example") is None


def test_signing_up_from_the_invitation_then_accepting_makes_you_a_member(client, personas):
    link = invite(client, personas, "casey@x.example", Role.ADMIN)
    client.get(link)
    mail.outbox.clear()

    signup = client.post(
        "/accounts/signup/",
        {"email": "casey@x.example", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert signup["Location"] == "/accounts/confirm-email/"
    confirm = link_in(only_email_to("casey@x.example"), "/accounts/confirm-email/")
    client.get(confirm)
    verified = client.post(confirm)

    # Verifying signs them in and brings them back to the invitation.
    assert signed_in_user(client).email == "casey@x.example"
    assert verified.status_code == 302
    assert verified["Location"] == link
    assert "Accept and join" in client.get(link).content.decode()

    accepted = client.post(link)

    assert accepted.status_code == 302
    assert accepted["Location"] == acme_dashboard(personas)
    assert role_in_acme(personas, "casey@x.example") == Role.ADMIN
    invitation = Invitation.objects.get(email="casey@x.example")
    assert invitation.accepted_by.email == "casey@x.example"
    assert client.get(acme_dashboard(personas)).status_code == 200
    # They also got their own organization, as every new user does.
    assert Organization.objects.visible_to(invitation.accepted_by).count() == 2


def test_signing_in_from_the_invitation_then_accepting_makes_you_a_member(client, personas):
    make_user("casey@x.example")
    link = invite(client, personas, "Casey@X.example", Role.VIEWER)
    client.get(link)

    login = client.post("/accounts/login/", {"login": "casey@x.example", "password": PASSWORD})

    assert login.status_code == 302
    assert login["Location"] == link
    accepted = client.post(link)
    assert accepted.status_code == 302
    assert role_in_acme(personas, "casey@x.example") == Role.VIEWER
    # Once accepted, signing in again goes to the app, not back to the invitation.
    client.logout()
    again = client.post("/accounts/login/", {"login": "casey@x.example", "password": PASSWORD})
    assert again["Location"] != link


def test_a_signed_in_user_with_another_email_is_refused(client, personas):
    link = invite(client, personas, "casey@x.example")
    client.force_login(personas.outsider)

    response = client.post(link)

    assert response.status_code == 403
    assert "This invitation is for casey@x.example" in response.content.decode()
    assert role_in_acme(personas, "outsider@b.example") is None
    assert Invitation.objects.get(email="casey@x.example").status == "pending"


def test_an_accepted_link_shows_the_invalid_page(client, personas):
    make_user("casey@x.example")
    link = invite(client, personas, "casey@x.example")
    client.force_login(User.objects.get(email="casey@x.example"))
    client.post(link)

    response = client.get(link)

    assert response.status_code == 410
    assert "The invitation to Acme is accepted." in response.content.decode()
    assert client.post(link).status_code == 410


def test_an_expired_link_shows_the_invalid_page(client, personas):
    make_user("casey@x.example")
    link = invite(client, personas, "casey@x.example")
    Invitation.objects.filter(email="casey@x.example").update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    anonymous = client.get(link)
    client.force_login(User.objects.get(email="casey@x.example"))
    accepting = client.post(link)

    assert anonymous.status_code == accepting.status_code == 410
    assert "The invitation to Acme is expired." in anonymous.content.decode()
    assert role_in_acme(personas, "casey@x.example") is None


def test_a_withdrawn_link_shows_the_invalid_page(client, personas):
    link = invite(client, personas, "casey@x.example")
    invitation = Invitation.objects.get(email="casey@x.example")
    client.force_login(personas.admin)
    client.post(f"/orgs/{personas.org.uuid}/invitations/{invitation.uuid}/revoke/")
    client.logout()

    response = client.get(link)

    assert response.status_code == 404
    assert "The link is not valid." in response.content.decode()


def test_a_made_up_link_shows_the_invalid_page(client, personas):
    assert client.get("/invitations/not-a-real-token/").status_code == 404


def test_reinviting_replaces_the_open_invitation_and_the_old_link_stops_working(client, personas):
    make_user("casey@x.example")
    old_link = invite(client, personas, "casey@x.example", Role.VIEWER)
    new_link = invite(client, personas, "casey@x.example", Role.ADMIN, by="owner")

    assert old_link != new_link
    assert Invitation.objects.filter(email="casey@x.example").count() == 1
    assert client.get(old_link).status_code == 404
    client.force_login(User.objects.get(email="casey@x.example"))
    assert client.post(old_link).status_code == 404
    assert client.post(new_link).status_code == 302
    assert role_in_acme(personas, "casey@x.example") == Role.ADMIN


def test_a_stale_invitation_in_the_session_does_not_hijack_later_sign_ins(client, personas):
    make_user("casey@x.example")
    link = invite(client, personas, "casey@x.example")
    client.get(link)  # remembered in the session...
    Invitation.objects.filter(email="casey@x.example").delete()  # ...then withdrawn
    client.get(link)

    login = client.post("/accounts/login/", {"login": "casey@x.example", "password": PASSWORD})

    assert login.status_code == 302
    assert login["Location"] != link


# ---------------------------------------------------------------------------------------------
# Cleaning up
# ---------------------------------------------------------------------------------------------
def test_expire_invitations_deletes_invitations_expired_more_than_30_days_ago(personas):
    now = timezone.now()

    def invitation(email: str, expired_days_ago: float, *, accepted: bool = False) -> Invitation:
        created, _raw = Invitation.issue(personas.org, email, Role.MEMBER, by=personas.owner)
        Invitation.objects.filter(pk=created.pk).update(
            expires_at=now - timedelta(days=expired_days_ago),
            accepted_at=now - timedelta(days=40) if accepted else None,
        )
        return created

    long_expired = invitation("long@x.example", 31)
    recently_expired = invitation("recent@x.example", 29)
    pending = invitation("pending@x.example", -5)
    accepted_long_ago = invitation("accepted@x.example", 45, accepted=True)

    assert expire_invitations() == 1

    remaining = set(Invitation.objects.values_list("pk", flat=True))
    assert long_expired.pk not in remaining
    assert {recently_expired.pk, pending.pk, accepted_long_ago.pk} <= remaining
    assert expire_invitations() == 0  # nothing left to do: running it twice is harmless


def test_expire_invitations_covers_every_organization(personas):
    for org, by in [(personas.org, personas.owner), (personas.other_org, personas.outsider)]:
        created, _raw = Invitation.issue(org, "old@x.example", Role.MEMBER, by=by)
        Invitation.objects.filter(pk=created.pk).update(
            expires_at=timezone.now() - timedelta(days=60)
        )

    assert expire_invitations() == 2
    assert not Invitation.objects.exists()
