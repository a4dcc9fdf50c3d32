"""Reading what Pulse sent and who is signed in, for tests of email-driven flows."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from django.contrib.auth import SESSION_KEY
from django.core import mail
from django.core.mail import EmailMultiAlternatives

from accounts.models import User

LINK = re.compile(r"https?://[^\s\"'<>]+")


def only_email_to(address: str) -> EmailMultiAlternatives:
    sent = [message for message in mail.outbox if address in message.to]
    assert len(sent) == 1, f"expected one email to {address}, got {[m.subject for m in sent]}"
    return sent[0]


def html_of(message: EmailMultiAlternatives) -> str:
    html = [content for content, mimetype in message.alternatives if mimetype == "text/html"]
    assert len(html) == 1, "the email has exactly one HTML alternative"
    return html[0]


def link_in(message: EmailMultiAlternatives, path_contains: str) -> str:
    """The path of the one link containing `path_contains`, present in both the text and HTML."""
    links = [link for link in LINK.findall(message.body) if path_contains in link]
    assert len(links) == 1, f"expected one {path_contains!r} link in {message.body!r}"
    assert links[0] in html_of(message).replace("&amp;", "&")
    return urlsplit(links[0]).path


def signed_in_user(client) -> User | None:
    user_id = client.session.get(SESSION_KEY)
    return User.objects.get(pk=user_id) if user_id else None
