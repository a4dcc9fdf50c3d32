"""The gateway's management API, under /api/v1/gateway/.

- `connections` (CRUD): an organization's provider endpoints. The API key is write-only
  (`has_key` says whether one is stored). A connection serves every project of its
  organization, so a project-bound API token may read the connections (to name them in its
  routes) but not change them; people (members and up) and organization-wide tokens do.
  Deleting one that routes use is refused (409) until they stop using it.
- `routes` (CRUD): a project's model names and aliases, each with its ordered upstreams
  (written in the same request) and a strategy.
- `settings/{project_uuid}` (GET, PUT, PATCH): a project's cache and body-logging choices.
- `limits` (CRUD): RPM/TPM/RPD/TPD for a whole project or one of its tokens.
- `models?project=`: the names a project's callers may send as `model` (what GET /v1/models lists).

Reading needs the viewer role (tokens: the read scope); writing needs the member role (tokens:
the write scope), as on the pages. Everything goes through `TenantScopedViewSetMixin`; an
outsider gets 404 for every object, exactly as for one that does not exist.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.db.models import Count, Prefetch, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, permissions, serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.generics import GenericAPIView, get_object_or_404
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api import TenantViewSet
from accounts.api_schema import ErrorSerializer
from accounts.models import ApiToken, Organization, Project, Role, User
from accounts.tenancy import TenantScopedViewSetMixin

from .models import Connection, GatewaySettings, RateLimit, Route, RouteUpstream
from .serializers import (
    CallableModelsSerializer,
    ConnectionFilterSerializer,
    ConnectionSerializer,
    GatewaySettingsSerializer,
    ProjectFilterSerializer,
    RateLimitSerializer,
    RouteSerializer,
)

ERRORS_PER_FIELD = OpenApiResponse(description="Bad input: a list of messages per field (per index for upstreams).")
TOO_WEAK = OpenApiResponse(
    description="Too weak a role (writing needs the member role), or a token without the needed scope."
)
NOT_FOUND = OpenApiResponse(description="No such object among those you can see.")
PROJECT_PARAMETER = OpenApiParameter(
    "project", OpenApiTypes.UUID, OpenApiParameter.QUERY, required=False,
    description="The project; a project-bound token may leave it out (its own project).",
)
ORGANIZATION_WIDE_ONLY = (
    "This API token is bound to one project; a connection serves every project of the organization, so "
    "it is changed by its members or an organization-wide token."
)


def crud_schema(noun: str, plural: str, serializer: type[serializers.Serializer], *, owner: str, filters: list) -> dict:
    """Summaries and the error responses of the CRUD actions (every 4xx body says why)."""
    return {
        "list": extend_schema(summary=f"List {plural}", parameters=filters),
        "retrieve": extend_schema(summary=f"Get a {noun}", responses={200: serializer, 404: NOT_FOUND}),
        "create": extend_schema(
            summary=f"Create a {noun}",
            description=f"Needs the member role in the {owner}'s organization (tokens: the write scope).",
            responses={201: serializer, 400: ERRORS_PER_FIELD, 403: TOO_WEAK},
        ),
        "update": extend_schema(
            summary=f"Replace a {noun}", description=f"The {owner} never changes.",
            responses={200: serializer, 400: ERRORS_PER_FIELD, 403: TOO_WEAK, 404: NOT_FOUND},
        ),
        "partial_update": extend_schema(
            summary=f"Change a {noun}", description=f"Only the fields sent change; the {owner} never does.",
            responses={200: serializer, 400: ERRORS_PER_FIELD, 403: TOO_WEAK, 404: NOT_FOUND},
        ),
        "destroy": extend_schema(summary=f"Delete a {noun}", responses={204: None, 403: TOO_WEAK, 404: NOT_FOUND}),
    }


class ManagedViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
    mixins.UpdateModelMixin, mixins.DestroyModelMixin, TenantViewSet,
):
    """CRUD for what members manage. `owner_field` names the body field that says whose object
    a new one is (organization or project)."""

    write_role = Role.MEMBER
    http_method_names = ["get", "post", "patch", "put", "delete", "head", "options"]
    owner_field = "project"

    def owner_organization(self, owner: Organization | Project) -> Organization:
        return owner if isinstance(owner, Organization) else owner.organization

    def create(self, request: Request, *args: object, **kwargs: object) -> Response:
        # Refuse a too-weak role (403) before looking at the rest of the body, so a viewer is told
        # "not allowed" rather than what else is wrong with it. An owner the caller cannot see is
        # left to the field's own 400 ("does not exist"), as for one that does not exist.
        if isinstance(request.data, dict) and self.owner_field in request.data:
            field = self.get_serializer().fields[self.owner_field]
            try:
                owner = field.run_validation(request.data[self.owner_field])
            except (serializers.ValidationError, DjangoValidationError):  # e.g. not a uuid
                owner = None
            if owner is not None:
                self.require_role(self.owner_organization(owner), self.write_role)
        return super().create(request, *args, **kwargs)

    def perform_create(self, serializer: serializers.ModelSerializer) -> None:
        self.require_role(self.owner_organization(serializer.validated_data[self.owner_field]), self.write_role)
        serializer.save()

    def filtered_by(self, queryset: QuerySet, filters: type[serializers.Serializer], lookups: dict[str, str]) -> QuerySet:
        if self.action != "list":
            return queryset
        params = filters(data=self.request.query_params.dict())
        params.is_valid(raise_exception=True)
        found = params.validated_data
        return queryset.filter(**{lookup: found[name] for name, lookup in lookups.items() if name in found})


# ---------------------------------------------------------------------------------------------
# Connections
# ---------------------------------------------------------------------------------------------
@extend_schema_view(
    **crud_schema("connection", "connections", ConnectionSerializer, owner="organization",
                  filters=[ConnectionFilterSerializer])
    | {"destroy": extend_schema(
        summary="Delete a connection",
        responses={
            204: None, 403: TOO_WEAK, 404: NOT_FOUND,
            409: OpenApiResponse(ErrorSerializer, description="Routes still use it: remove it from them first."),
        },
    )}
)
class ConnectionViewSet(ManagedViewSet):
    """An organization's provider endpoints: kind (wire format), base URL, the provider calls are
    priced under, and an API key stored encrypted that no response ever contains."""

    queryset = Connection.objects.all()
    serializer_class = ConnectionSerializer
    write_role = Connection.MANAGE_ROLE
    owner_field = "organization"

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        # An explicit order: Meta.ordering does not apply to a query grouped for the count.
        queryset = queryset.select_related("organization").annotate(
            route_count=Count("route_upstreams__route", distinct=True)
        ).order_by("name", "id")
        return self.filtered_by(queryset, ConnectionFilterSerializer, {"organization": "organization__uuid"})

    def refuse_project_bound_token(self) -> None:
        principal = self.principal
        if isinstance(principal, ApiToken) and principal.project_id:
            raise PermissionDenied(ORGANIZATION_WIDE_ONLY)

    def create(self, request: Request, *args: object, **kwargs: object) -> Response:
        self.refuse_project_bound_token()
        return super().create(request, *args, **kwargs)

    def check_object_permissions(self, request: Request, obj: Connection) -> None:
        super().check_object_permissions(request, obj)
        if request.method not in permissions.SAFE_METHODS:
            self.refuse_project_bound_token()

    def perform_create(self, serializer: ConnectionSerializer) -> None:
        self.require_role(serializer.validated_data["organization"], self.write_role)
        serializer.save(created_by=self.principal if isinstance(self.principal, User) else None)

    def destroy(self, request: Request, *args: object, **kwargs: object) -> Response:
        connection = self.get_object()
        routes = list(connection.routes_using().order_by("project__name", "name"))
        if routes:
            names = ", ".join(f"{route.project.name}/{route.name}" for route in routes)
            return Response(
                {"detail": f"Routes use the connection {connection.name}: {names}. Remove it from those routes "
                           "first, or disable the connection instead."},
                status=status.HTTP_409_CONFLICT,
            )
        connection.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


# ---------------------------------------------------------------------------------------------
# Routes
# ---------------------------------------------------------------------------------------------
@extend_schema_view(
    **crud_schema("route", "routes", RouteSerializer, owner="project", filters=[ProjectFilterSerializer])
)
class RouteViewSet(ManagedViewSet):
    """A project's model names and aliases. Each route sends calls to its upstreams (a
    connection of the organization and the model name it expects there) by its strategy; the
    upstream list is written in the same request, in order, and a change replaces it whole."""

    queryset = Route.objects.all()
    serializer_class = RouteSerializer

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        upstreams = RouteUpstream.objects.select_related("connection").order_by("position", "id")
        queryset = queryset.select_related("project__organization").prefetch_related(
            Prefetch("upstreams", queryset=upstreams)
        )
        return self.filtered_by(queryset, ProjectFilterSerializer, {"project": "project__uuid"})

    def organization_of(self, obj: Route) -> Organization:
        return obj.project.organization

    @transaction.atomic  # the route and its upstream list change together, or not at all
    def perform_create(self, serializer: RouteSerializer) -> None:
        super().perform_create(serializer)

    @transaction.atomic
    def perform_update(self, serializer: RouteSerializer) -> None:
        serializer.save()


# ---------------------------------------------------------------------------------------------
# Rate limits
# ---------------------------------------------------------------------------------------------
@extend_schema_view(
    **crud_schema("rate limit", "rate limits", RateLimitSerializer, owner="project", filters=[ProjectFilterSerializer])
)
class RateLimitViewSet(ManagedViewSet):
    """Requests and tokens per minute and per day, for a whole project (no token) or one of its
    API tokens; at most one row each. Enforced by the gateway across its processes, with
    OpenAI's x-ratelimit-* headers and 429 + Retry-After when exceeded."""

    queryset = RateLimit.objects.all()
    serializer_class = RateLimitSerializer

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        queryset = queryset.select_related("project__organization", "api_token")
        return self.filtered_by(queryset, ProjectFilterSerializer, {"project": "project__uuid"})

    def organization_of(self, obj: RateLimit) -> Organization:
        return obj.project.organization


# ---------------------------------------------------------------------------------------------
# A project's settings
# ---------------------------------------------------------------------------------------------
PROJECT_IN_PATH = [OpenApiParameter("project_uuid", OpenApiTypes.UUID, OpenApiParameter.PATH)]


@extend_schema_view(
    retrieve=extend_schema(
        summary="A project's gateway settings", parameters=PROJECT_IN_PATH,
        description="The defaults until someone changes them (updated_at is then null).",
        responses={200: GatewaySettingsSerializer, 404: NOT_FOUND},
    ),
    update=extend_schema(
        summary="Replace a project's gateway settings", parameters=PROJECT_IN_PATH,
        description="Fields left out keep their value. Needs the member role (tokens: the write scope).",
        responses={200: GatewaySettingsSerializer, 400: ERRORS_PER_FIELD, 403: TOO_WEAK, 404: NOT_FOUND},
    ),
    partial_update=extend_schema(
        summary="Change a project's gateway settings", parameters=PROJECT_IN_PATH,
        description="Only the fields sent change. Needs the member role (tokens: the write scope).",
        responses={200: GatewaySettingsSerializer, 400: ERRORS_PER_FIELD, 403: TOO_WEAK, 404: NOT_FOUND},
    ),
)
class GatewaySettingsViewSet(mixins.RetrieveModelMixin, mixins.UpdateModelMixin, TenantViewSet):
    """A project's cache (on/off, TTL) and body-logging (on/off, retention, size cap) choices."""

    queryset = GatewaySettings.objects.all()
    serializer_class = GatewaySettingsSerializer
    lookup_field = "project__uuid"
    lookup_url_kwarg = "project_uuid"
    http_method_names = ["get", "put", "patch", "head", "options"]

    def organization_of(self, obj: GatewaySettings) -> Organization:
        return obj.project.organization

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        return queryset.select_related("project__organization")

    def project(self) -> Project:
        return get_object_or_404(
            Project.objects.visible_to(self.principal).select_related("organization"),
            uuid=self.kwargs["project_uuid"],
        )

    def retrieve(self, request: Request, *args: object, **kwargs: object) -> Response:
        project = self.project()
        current = self.get_queryset().filter(project=project).first() or GatewaySettings(project=project)
        return Response(self.get_serializer(current).data)

    @transaction.atomic  # the row made for the defaults goes again if the change is refused
    def update(self, request: Request, *args: object, **kwargs: object) -> Response:
        project = self.project()
        self.require_role(project.organization, self.write_role)  # 403 before anything is written
        GatewaySettings.of(project)
        return super().update(request, *args, **kwargs)


# ---------------------------------------------------------------------------------------------
# The models a project may call
# ---------------------------------------------------------------------------------------------
class CallableModelsView(TenantScopedViewSetMixin, GenericAPIView):
    """The names a project's callers may send as `model`: its enabled routes with at least one
    upstream on an enabled connection. The gateway's GET /v1/models lists the same."""

    queryset = Route.objects.all()
    serializer_class = CallableModelsSerializer
    pagination_class = None

    @extend_schema(
        summary="The models a project may call",
        parameters=[PROJECT_PARAMETER],
        responses={200: CallableModelsSerializer, 404: NOT_FOUND},
    )
    def get(self, request: Request) -> Response:
        project = self.requested_project()
        upstreams = RouteUpstream.objects.select_related("connection").order_by("position", "id")
        routes = (
            self.get_queryset().filter(project=project).callable()
            .prefetch_related(Prefetch("upstreams", queryset=upstreams)).order_by("name")
        )
        body = {"project": project.uuid, "base_url": settings.GATEWAY_PUBLIC_URL, "models": routes}
        return Response(CallableModelsSerializer(body).data)
