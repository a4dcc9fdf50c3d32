from __future__ import annotations

from django.http import HttpRequest

from .models import Organization


def tenancy(request: HttpRequest) -> dict:
    """The header's organization/project switcher: the user's organizations with their projects
    (two queries), and the project or organization the current page is about."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "switcher_organizations": lambda: Organization.objects.visible_to(user).prefetch_related("projects"),
        "current_project": getattr(request, "project", None),
        "current_organization": getattr(request, "organization", None),
    }
