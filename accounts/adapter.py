"""Pulse's customizations of django-allauth, made through its adapter rather than copied views."""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.core.exceptions import ImmediateHttpResponse
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import render
from django.urls import reverse

from . import devices, emails, magic_link, signin_limits
from .models import User

PENDING_INVITATION_SESSION_KEY = "pending_invitation"


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
        from anywhere locked the account for everyone. accounts/signin_limits.py counts them per
        known device, or else per address and (account, address) under a per-account ceiling.
        Refusals are a 429 with a page that says which limit was hit and how to get in anyway.
        """
        login = str(credentials.get("email", credentials.get("username", ""))).strip().lower()
        try:
            # allauth's authenticate() rolls this usage back when the password is right, so only
            # failures count (the attribute is allauth's own, 65.x).
            self._login_failed_rl_usage = signin_limits.consume_password_attempt(request, login)
        except signin_limits.TooMany as refused:
            raise ImmediateHttpResponse(self.too_many_attempts(request, refused.message)) from None

    def _delete_login_attempts_cached_email(self, request: HttpRequest, **credentials: Any) -> None:
        """After a password reset (allauth's hook, 65.x)."""
        signin_limits.forget_failures_after_reset(request, str(credentials.get("email", "")))

    def post_login(self, request: HttpRequest, user: User, **kwargs: Any) -> HttpResponseBase:
        """Every completed sign-in (password, code, one-click link, signup) marks this browser as a
        known device of the account, which others' failures can never lock out."""
        response = super().post_login(request, user, **kwargs)
        devices.remember(response, user)
        return response

    def too_many_attempts(self, request: HttpRequest, message: str) -> HttpResponse:
        return render(request, "429.html", {"message": message}, status=429)

    def get_login_redirect_url(self, request: HttpRequest) -> str:
        token = request.session.get(PENDING_INVITATION_SESSION_KEY)
        if token:
            return reverse("invitation_accept", args=[token])
        return super().get_login_redirect_url(request)

    def get_signup_redirect_url(self, request: HttpRequest) -> str:
        return self.get_login_redirect_url(request)
