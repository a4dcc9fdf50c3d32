from __future__ import annotations

from django.http import HttpRequest

from .display import UnreadAlerts


def unread_alerts(request: HttpRequest) -> dict:
    """The bell's badge: counted (one COUNT query) only when a page shows the bell."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"unread_alerts": UnreadAlerts(user)}
