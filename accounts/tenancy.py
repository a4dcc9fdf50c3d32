"""The one place tenant scoping happens, for pages and for the API.

Pages call `project_for()` / `organization_for()`; API viewsets inherit
`TenantScopedViewSetMixin`. Both go through `TenantQuerySet.visible_to()` (outsiders get 404)
and `Organization.require_role()` (too weak a role gets 403).
"""

from __future__ import annotations

from uuid import UUID

from django.db.models import QuerySet
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from rest_framework import permissions
from rest_framework.exceptions import PermissionDenied as ApiPermissionDenied
from rest_framework.exceptions import ValidationError as ApiValidationError
from rest_framework.request import Request

from .models import ApiToken, Organization, Project, Role, User

CURRENT_PROJECT_SESSION_KEY = "current_project"


# ---------------------------------------------------------------------------------------------
# Pages
# ---------------------------------------------------------------------------------------------
def project_for(request: HttpRequest, project_uuid: UUID, minimum: Role = Role.VIEWER) -> Project:
    """The project, if the signed-in user may see it (else 404) with at least `minimum` (else 403).

    Also remembers it as the user's current project for the header and the home redirect.
    """
    project = get_object_or_404(
        Project.objects.visible_to(request.user).select_related("organization"), uuid=project_uuid
    )
    request.role = project.organization.require_role(request.user, minimum)
    request.project = project
    request.organization = project.organization
    request.session[CURRENT_PROJECT_SESSION_KEY] = str(project.uuid)
    return project


def organization_for(request: HttpRequest, organization_uuid: UUID, minimum: Role = Role.VIEWER) -> Organization:
    organization = get_object_or_404(Organization.objects.visible_to(request.user), uuid=organization_uuid)
    request.role = organization.require_role(request.user, minimum)
    request.organization = organization
    return organization


def current_project(request: HttpRequest) -> Project | None:
    """The project the user last worked in, or their first one."""
    projects = Project.objects.visible_to(request.user).select_related("organization")
    remembered = request.session.get(CURRENT_PROJECT_SESSION_KEY)
    if remembered:
        project = projects.filter(uuid=remembered).first()
        if project:
            return project
    return projects.order_by("organization__created_at", "created_at").first()


# ---------------------------------------------------------------------------------------------
# API
# ---------------------------------------------------------------------------------------------
def principal_of(request: Request) -> User | ApiToken:
    """Who is asking: the API token if one authenticated the request, else the signed-in user."""
    return request.auth if isinstance(request.auth, ApiToken) else request.user


class TokenScopePermission(permissions.BasePermission):
    """A token needs the view's scope for the method (`read` to read, `write` to change), or one
    of the scopes the action also accepts (`also_accepted_scopes`)."""

    def has_permission(self, request: Request, view: object) -> bool:
        token = request.auth
        if not isinstance(token, ApiToken):
            return True
        scope = view.required_scope(request)
        if not any(token.has_scope(accepted) for accepted in (scope, *view.also_accepted_scopes)):
            raise ApiPermissionDenied(f"This API token lacks the '{scope}' scope.", code="missing_scope")
        return True


class TenantRolePermission(permissions.BasePermission):
    """Writing to an object needs at least the view's `write_role` in the object's organization."""

    def has_object_permission(self, request: Request, view: object, obj: object) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return True  # visibility was already decided by the scoped queryset
        view.require_role(view.organization_of(obj), view.write_role)
        return True


def _is_drf_class(klass: type) -> bool:
    """GenericAPIView, GenericViewSet, the mixins…: DRF's own code, whose get_object() goes
    through get_queryset()."""
    return klass.__module__ == "rest_framework" or klass.__module__.startswith("rest_framework.")


class TenantScopedViewSetMixin:
    """Every tenant-owned viewset inherits this; it owns get_queryset and the permissions.

    Subclasses set `queryset` to a model whose manager is a TenantQuerySet and may narrow it in
    `safely_get_queryset()`, which receives the queryset already scoped to the caller. A
    `get_queryset` or `get_object` anywhere in a subclass's MRO other than here and in DRF's own
    classes behind this mixin is refused when the class is defined (`__init_subclass__`), so the
    scoping cannot be skipped by accident; it fails at import, not in production. list(),
    retrieve() and filter_queryset() may be overridden: they start from get_queryset().
    """

    # Methods through which a view could reach rows without the scoping above. DRF's own
    # get_object() (GenericAPIView) looks up in get_queryset(), which is why it must stay DRF's.
    GUARDED_METHODS = ("get_queryset", "get_object")

    write_role: Role = Role.MEMBER
    read_scope: str = ApiToken.Scope.READ
    write_scope: str = ApiToken.Scope.WRITE
    # Scopes that also open one action, set per action: `@action(..., also_accepted_scopes=[...])`
    # (DRF turns an action's extra arguments into view attributes).
    also_accepted_scopes: tuple[str, ...] = ()
    lookup_field = "uuid"

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        # The whole MRO, not only what comes ahead of this mixin: the mixin defines no
        # get_object(), so one in a base listed after it (but before DRF's GenericAPIView) would
        # win too. DRF's own classes may define them only behind this mixin: GenericAPIView's
        # get_object() looks up in get_queryset(), which resolves here; its get_queryset()
        # ahead of the mixin would return every row.
        mro = cls.__mro__
        position = mro.index(TenantScopedViewSetMixin)
        for index, klass in enumerate(mro):
            if klass is TenantScopedViewSetMixin or (index > position and _is_drf_class(klass)):
                continue
            for name in cls.GUARDED_METHODS:
                if name in vars(klass):
                    hint = " (list TenantScopedViewSetMixin before DRF's classes)" if _is_drf_class(klass) else ""
                    raise TypeError(
                        f"{klass.__name__}.{name}() would bypass tenant scoping in {cls.__name__}: "
                        f"a TenantScopedViewSetMixin viewset may not override {name}(){hint}. Narrow the "
                        "scoped queryset in safely_get_queryset(self, queryset) instead."
                    )

    def get_permissions(self) -> list[permissions.BasePermission]:
        return [permissions.IsAuthenticated(), TokenScopePermission(), TenantRolePermission()]

    @property
    def principal(self) -> User | ApiToken:
        return principal_of(self.request)

    def required_scope(self, request: Request) -> str:
        return self.read_scope if request.method in permissions.SAFE_METHODS else self.write_scope

    def get_queryset(self) -> QuerySet:
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular introspecting, no request
            return self.queryset.model.objects.none()
        scoped = self.queryset.model.objects.visible_to(self.principal)
        return self.safely_get_queryset(scoped)

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        return queryset

    def organization_of(self, obj: object) -> Organization:
        return obj.organization

    def require_role(self, organization: Organization, minimum: Role) -> Role:
        role = organization.role_of(self.principal)
        if role is None or role < minimum:
            raise ApiPermissionDenied(
                f"This needs the {minimum.label.lower()} role or higher in {organization.name}."
            )
        return role

    def requested_project(self, minimum: Role = Role.VIEWER, param: str = "project") -> Project:
        """The project a project-level endpoint acts on: a project-bound token's own project, or
        the one named by `?project=<uuid>` among those the principal can see (else 404), with at
        least `minimum` there (else 403). Naming another project with a bound token is a 404."""
        wanted = self.request.query_params.get(param)
        principal = self.principal
        if wanted is None and isinstance(principal, ApiToken) and principal.project_id:
            project = principal.project
        else:
            if wanted is None:
                raise ApiValidationError({param: [f"Name the project (?{param}=<uuid>)."]})
            try:
                wanted_uuid = UUID(wanted)
            except ValueError:
                raise ApiValidationError({param: ["Must be a project's UUID."]}) from None
            project = get_object_or_404(
                Project.objects.visible_to(principal).select_related("organization"), uuid=wanted_uuid
            )
        if minimum > Role.VIEWER:  # seeing the project already means at least a viewer's role
            self.require_role(project.organization, minimum)
        return project
