from __future__ import annotations

from allauth.account.decorators import secure_admin_login
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from . import health

# Operators sign in to the admin through allauth (verification, rate limits, login by code).
admin.site.login = secure_admin_login(admin.site.login)
admin.site.site_header = "Pulse operations"
admin.site.site_title = "Pulse admin"

urlpatterns = [
    path("health", health.health, name="health"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("api/v1/", include("accounts.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("", include("alerts.urls")),
    path("", include("benchmarks.urls")),
    path("", include("costs.urls")),
    path("", include("gateway.urls")),
    path("", include("accounts.urls")),
]

# Under /api/ and /v1/ errors are JSON without rendering a page first (lib/json_errors.py).
handler400 = "lib.json_errors.bad_request"
handler403 = "lib.json_errors.permission_denied"
handler404 = "lib.json_errors.page_not_found"
handler500 = "lib.json_errors.server_error"
