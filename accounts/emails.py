"""The one way Pulse sends email.

Every email has three templates with a fixed naming scheme under templates/emails/:
`<name>_subject.txt`, `<name>_body.txt` and `<name>_body.html`. The backend is whatever settings
say (console locally, locmem in tests, SMTP or an anymail ESP in production).
"""

from __future__ import annotations

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template import TemplateDoesNotExist
from django.template.loader import get_template, render_to_string


def has_template(name: str) -> bool:
    try:
        get_template(f"emails/{name}_subject.txt")
    except TemplateDoesNotExist:
        return False
    return True


def render_email(
    name: str, to: str | list[str], context: dict, *, headers: dict[str, str] | None = None
) -> EmailMultiAlternatives:
    context = {"site_url": settings.SITE_URL, **context}
    subject = " ".join(render_to_string(f"emails/{name}_subject.txt", context).split())
    text = render_to_string(f"emails/{name}_body.txt", context).strip() + "\n"
    html = render_to_string(f"emails/{name}_body.html", context)
    message = EmailMultiAlternatives(
        subject=subject,
        body=text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[to] if isinstance(to, str) else list(to),
        headers=headers or {},
    )
    message.attach_alternative(html, "text/html")
    return message


def send_email(
    name: str, to: str | list[str], context: dict, *, headers: dict[str, str] | None = None
) -> None:
    render_email(name, to, context, headers=headers).send()
