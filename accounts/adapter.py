"""Pulse's customizations of django-allauth, made through its adapter rather than copied views."""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.core.internal import ratelimit
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from . import emails, magic_link
from .models import User

PENDING_INVITATION_SESSION_KEY = "pending_invitation"

# Failed password sign-ins, counted by pre_authenticate() below (rates in ACCOUNT_RATE_LIMITS).
LOGIN_FAILED = "login_failed"  # per address, and per (account, address)
LOGIN_FAILED_ACCOUNT = "login_failed_account"  # per account, from every address together
TOO_MANY_FROM_HERE = (
    "Too many failed sign-in attempts from your network. Wait a few minutes and try again, "
    "or sign in with a code sent by email."
)
TOO_MANY_FOR_ACCOUNT = (
    "This account has had too many failed sign-in attempts. Sign in with a code sent by email, "
    "or reset your password; password sign-in opens again within the hour."
)


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return settings.SIGNUP_OPEN

    def send_mail(self, template_prefix: str, email: str, context: dict) -> None:
        """Route allauth's emails through Pulse's one email helper (HTML + text)."""
        name = template_prefix.rsplit("/", 1)[-1]  # "account/email/login_code" -> "login_code"
        if not emails.has_template(name):
            return super().send_mail(template_prefix, email, context)
        context = {**context, "email": email}
        if name == "login_code":
            user = User.objects.filter(email__iexact=email, is_active=True).first()
            if user is not None:
                context["login_link"] = magic_link.link_for(user)
            context["expires_minutes"] = settings.ACCOUNT_LOGIN_BY_CODE_TIMEOUT // 60
        emails.send_email(name, email, context)

    def pre_authenticate(self, request: HttpRequest, **credentials: Any) -> None:
        """Keep password guessing out without letting anyone lock a person out.

        allauth counts failures per account ("5/5m/key" on the email), so five wrong passwords
        from anywhere locked the account for everyone. Here the per-account count is per
        (account, address): an attacker's failures lock only the attacker's address. A per-address
        limit over all accounts stops one address from spraying many, and a generous ceiling per
        account stops a guess spread over many addresses; even then the emailed code still signs
        the owner in. Refusals are a 429 with a page that says which limit was hit.
        """
        login = str(credentials.get("email", credentials.get("username", ""))).strip().lower()
        address = ratelimit.get_ip(request)
        here = ratelimit.consume(request, app="allauth.account", action=LOGIN_FAILED, key=f"{login}|{address}")
        if not here:
            raise ImmediateHttpResponse(self.too_many_attempts(request, TOO_MANY_FROM_HERE))
        account = ratelimit.consume(request, app="allauth.account", action=LOGIN_FAILED_ACCOUNT, key=login)
        if not account:
            here.rollback()  # refused before checking the password: not a failure from here
            raise ImmediateHttpResponse(self.too_many_attempts(request, TOO_MANY_FOR_ACCOUNT))
        # allauth's authenticate() rolls this usage back when the password is right, so only
        # failures count (the attribute is allauth's own, 65.x).
        self._login_failed_rl_usage = ratelimit.RateLimitUsage(usage=[*here.usage, *account.usage])

    def _delete_login_attempts_cached_email(self, request: HttpRequest, **credentials: Any) -> None:
        """After a password reset (allauth's hook, 65.x): the account's failures no longer count,
        so its owner signs in with the new password from where the reset was made."""
        login = str(credentials.get("email", "")).strip().lower()
        address = ratelimit.get_ip(request)
        ratelimit.clear(request, app="allauth.account", action=LOGIN_FAILED_ACCOUNT, key=login)
        ratelimit.clear(request, app="allauth.account", action=LOGIN_FAILED, key=f"{login}|{address}")

    def too_many_attempts(self, request: HttpRequest, message: str) -> HttpResponse:
        return render(request, "429.html", {"message": message}, status=429)

    def get_login_redirect_url(self, request: HttpRequest) -> str:
        token = request.session.get(PENDING_INVITATION_SESSION_KEY)
        if token:
            return reverse("invitation_accept", args=[token])
        return super().get_login_redirect_url(request)

    def get_signup_redirect_url(self, request: HttpRequest) -> str:
        return self.get_login_redirect_url(request)
