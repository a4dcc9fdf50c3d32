"""Pulse's customizations of django-allauth, made through its adapter rather than copied views."""

from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse

from . import emails, magic_link
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

    def get_login_redirect_url(self, request: HttpRequest) -> str:
        token = request.session.get(PENDING_INVITATION_SESSION_KEY)
        if token:
            return reverse("invitation_accept", args=[token])
        return super().get_login_redirect_url(request)

    def get_signup_redirect_url(self, request: HttpRequest) -> str:
        return self.get_login_redirect_url(request)
