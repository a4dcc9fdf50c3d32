"""REST API for accounts and tenancy: /api/v1/me, organizations, projects, members,
invitations and API tokens. Every tenant-owned viewset goes through TenantScopedViewSetMixin."""

from __future__ import annotations

from django.db.models import F, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import mixins, serializers, viewsets
from rest_framework.exceptions import PermissionDenied
from rest_framework.generics import get_object_or_404
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from costs.currency import currency_of
from lib.strict_fields import (
    StrictCharField,
    StrictChoiceField,
    StrictModelSerializer,
    StrictMultipleChoiceField,
    StrictSlugRelatedField,
)

from .invitations import send_invitation
from .models import (
    ApiToken,
    Invitation,
    Membership,
    Organization,
    Project,
    Role,
    User,
    require_person,
)
from .tenancy import TenantScopedViewSetMixin, principal_of

ROLE_NAMES = {role: role.name.lower() for role in Role}
ORGANIZATION_IN_PATH = extend_schema(
    parameters=[OpenApiParameter("organization_uuid", OpenApiTypes.UUID, OpenApiParameter.PATH)]
)
PROJECT_IN_PATH = extend_schema(
    parameters=[OpenApiParameter("project_uuid", OpenApiTypes.UUID, OpenApiParameter.PATH)]
)


class RoleField(StrictChoiceField):
    """Roles travel as names ("owner", "admin", "member", "viewer"), not numbers."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(choices=[name for name in ROLE_NAMES.values()], **kwargs)

    def to_representation(self, value: int) -> str:
        return ROLE_NAMES[Role(value)]

    def to_internal_value(self, data: object) -> Role:
        name = super().to_internal_value(data)
        return Role[name.upper()]

    def get_default(self) -> object:
        # DRF puts a declared default into validated_data as is, without to_internal_value():
        # convert it too, or `default="member"` reaches the database as a string.
        default = super().get_default()
        return self.to_internal_value(default) if isinstance(default, str) else default


# ---------------------------------------------------------------------------------------------
# Serializers
# ---------------------------------------------------------------------------------------------
class UserSerializer(StrictModelSerializer):
    class Meta:
        model = User
        fields = ["id", "email", "first_name", "last_name"]
        read_only_fields = fields


class MeUserSerializer(StrictModelSerializer):
    """The caller's own user: what `GET /me` shows and `PATCH /me` changes."""

    display_currency = StrictCharField(
        help_text="USD, GBP or EUR: the currency pages and API responses show money in.",
    )

    class Meta:
        model = User
        fields = ["id", "email", "first_name", "last_name", "display_currency"]
        read_only_fields = ["id", "email"]

    def validate_display_currency(self, value: str) -> str:
        try:
            return currency_of(value)
        except ValueError as error:
            raise serializers.ValidationError(str(error)) from None


class OrganizationSerializer(StrictModelSerializer):
    role = serializers.SerializerMethodField(help_text="Your role in this organization.")

    class Meta:
        model = Organization
        fields = ["uuid", "name", "time_zone", "role", "created_at"]
        read_only_fields = ["uuid", "role", "created_at"]

    def get_role(self, organization: Organization) -> str | None:
        role = getattr(organization, "my_role", None)
        if role is None:
            role = organization.role_of(self.context.get("principal"))
        return ROLE_NAMES[Role(role)] if role is not None else None


class OwnedByVisibleOrganization:
    """For serializers of objects an organization owns: only organizations the caller can see
    are valid (others read as "not found"), and an object never moves between tenants."""

    organization_fixed_after_creation = True  # the API schema's update requests leave it out

    def get_fields(self) -> dict:
        fields = super().get_fields()
        principal = self.context.get("principal")  # absent while the OpenAPI schema is generated
        if principal is not None:
            fields["organization"].queryset = Organization.objects.visible_to(principal)
        if self.instance is not None:
            fields["organization"].read_only = True
        return fields


class ProjectSerializer(OwnedByVisibleOrganization, StrictModelSerializer):
    organization = StrictSlugRelatedField(slug_field="uuid", queryset=Organization.objects.none())

    class Meta:
        model = Project
        fields = ["uuid", "name", "organization", "created_at"]
        read_only_fields = ["uuid", "created_at"]

    def validate(self, attrs: dict) -> dict:
        organization = attrs.get("organization") or self.instance.organization
        name = attrs.get("name")
        if name is not None:
            clash = organization.projects.filter(name__iexact=name)
            if self.instance is not None:
                clash = clash.exclude(pk=self.instance.pk)
            if clash.exists():
                raise serializers.ValidationError({"name": f"{organization.name} already has a project named {name!r}."})
        return attrs


class MemberSerializer(StrictModelSerializer):
    user = UserSerializer(read_only=True)
    role = RoleField()

    class Meta:
        model = Membership
        fields = ["uuid", "user", "role", "created_at"]
        read_only_fields = ["uuid", "user", "created_at"]


class InvitationSerializer(StrictModelSerializer):
    role = RoleField(default="member")
    invited_by = serializers.SlugRelatedField(slug_field="email", read_only=True)

    class Meta:
        model = Invitation
        fields = ["uuid", "email", "role", "status", "invited_by", "created_at", "expires_at", "accepted_at"]
        read_only_fields = ["uuid", "status", "invited_by", "created_at", "expires_at", "accepted_at"]


class ApiTokenSerializer(StrictModelSerializer):
    scopes = StrictMultipleChoiceField(choices=ApiToken.Scope.choices, allow_empty=False)
    project = serializers.SlugRelatedField(slug_field="uuid", read_only=True)

    class Meta:
        model = ApiToken
        fields = [
            "uuid", "name", "prefix", "project", "scopes", "created_at", "expires_at",
            "last_used_at", "revoked_at", "is_active",
        ]
        read_only_fields = ["uuid", "prefix", "project", "created_at", "last_used_at", "revoked_at", "is_active"]

    def to_representation(self, instance: ApiToken) -> dict:
        data = super().to_representation(instance)
        data["scopes"] = sorted(data["scopes"])
        return data


class NewApiTokenSerializer(ApiTokenSerializer):
    token = serializers.CharField(read_only=True, help_text="The raw token. Shown only in this response.")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]


# ---------------------------------------------------------------------------------------------
# Views
# ---------------------------------------------------------------------------------------------
ME_RESPONSE = inline_serializer(
    "Me",
    {
        "user": MeUserSerializer(allow_null=True),
        "token": ApiTokenSerializer(allow_null=True),
        "organization": OrganizationSerializer(allow_null=True),
        "project": ProjectSerializer(allow_null=True),
        "organizations": OrganizationSerializer(many=True),
    },
)


class MeView(APIView):
    """Who is calling: the token's project and organization, or the signed-in user. A person
    may PATCH their own name and display currency."""

    @extend_schema(responses=ME_RESPONSE)
    def get(self, request: Request) -> Response:
        principal = principal_of(request)
        context = {"principal": principal, "request": request}
        if isinstance(principal, ApiToken):
            return Response(
                {
                    "user": None,
                    "token": ApiTokenSerializer(principal, context=context).data,
                    "organization": OrganizationSerializer(principal.organization, context=context).data,
                    "project": ProjectSerializer(principal.project, context=context).data if principal.project else None,
                    "organizations": [OrganizationSerializer(principal.organization, context=context).data],
                }
            )
        return Response(self._person(principal, context))

    @extend_schema(request=MeUserSerializer, responses=ME_RESPONSE, summary="Change your name or display currency")
    def patch(self, request: Request) -> Response:
        principal = principal_of(request)
        if isinstance(principal, ApiToken):
            raise PermissionDenied("API tokens have no user settings; sign in as a person to change them.")
        serializer = MeUserSerializer(principal, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        serializer.save()
        return Response(self._person(principal, {"principal": principal, "request": request}))

    def _person(self, principal: User, context: dict) -> dict:
        organizations = Organization.objects.visible_to(principal).annotate(my_role=F("memberships__role"))
        return {
            "user": MeUserSerializer(principal).data,
            "token": None,
            "organization": None,
            "project": None,
            "organizations": OrganizationSerializer(organizations, many=True, context=context).data,
        }


class TenantViewSet(TenantScopedViewSetMixin, viewsets.GenericViewSet):
    def get_serializer_context(self) -> dict:
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular introspecting, no request
            return super().get_serializer_context()
        return {**super().get_serializer_context(), "principal": self.principal}

    def require_person(self, action: str) -> None:
        """The model's rule, checked early where a create must refuse before reading the body."""
        require_person(self.principal, action)


class OrganizationViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin,
    mixins.CreateModelMixin, mixins.DestroyModelMixin, TenantViewSet,
):
    queryset = Organization.objects.all()
    serializer_class = OrganizationSerializer
    write_role = Role.ADMIN

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        if isinstance(self.principal, User):
            # The membership join from visible_to() is reused: this is the caller's own role.
            queryset = queryset.annotate(my_role=F("memberships__role"))
        return queryset

    def organization_of(self, obj: Organization) -> Organization:
        return obj

    def create(self, request: Request, *args: object, **kwargs: object) -> Response:
        self.require_person("create organizations")  # before the body is validated
        return super().create(request, *args, **kwargs)

    def perform_create(self, serializer: OrganizationSerializer) -> None:
        data = serializer.validated_data
        organization = Organization.create_for_owner(self.principal, name=data["name"])
        if "time_zone" in data:
            organization.time_zone = data["time_zone"]
            organization.save(update_fields=["time_zone"])
        serializer.instance = organization

    def perform_destroy(self, instance: Organization) -> None:
        instance.remove(by=self.principal)


class ProjectViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
    mixins.UpdateModelMixin, mixins.DestroyModelMixin, TenantViewSet,
):
    queryset = Project.objects.all()
    serializer_class = ProjectSerializer
    write_role = Role.ADMIN
    http_method_names = ["get", "post", "patch", "put", "delete", "head", "options"]

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        return queryset.select_related("organization")

    def perform_create(self, serializer: ProjectSerializer) -> None:
        data = serializer.validated_data
        serializer.instance = Project.create_in(data["organization"], name=data["name"], by=self.principal)

    def perform_destroy(self, instance: Project) -> None:
        instance.remove(by=self.principal)  # refuses the organization's last project (400)


class OrganizationChildViewSet(TenantViewSet):
    """Resources listed under /organizations/{organization_uuid}/…: an outsider gets 404 for
    the organization itself, before anything else is looked at."""

    write_role = Role.ADMIN

    def get_organization(self) -> Organization:
        if not hasattr(self, "_organization"):
            self._organization = get_object_or_404(
                Organization.objects.visible_to(self.principal), uuid=self.kwargs["organization_uuid"]
            )
        return self._organization

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        return queryset.filter(organization=self.get_organization())


@ORGANIZATION_IN_PATH
class MemberViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin,
    mixins.DestroyModelMixin, OrganizationChildViewSet,
):
    queryset = Membership.objects.all()
    serializer_class = MemberSerializer
    http_method_names = ["get", "patch", "put", "delete", "head", "options"]

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        return super().safely_get_queryset(queryset).select_related("user")

    def check_object_permissions(self, request: Request, obj: Membership) -> None:
        # Anyone may remove themselves (leave); everything else needs the admin role.
        if request.method == "DELETE" and isinstance(self.principal, User) and obj.user_id == self.principal.pk:
            return
        super().check_object_permissions(request, obj)

    def perform_update(self, serializer: MemberSerializer) -> None:
        serializer.instance.change_role(serializer.validated_data["role"], by=self.principal)

    def perform_destroy(self, instance: Membership) -> None:
        instance.remove(by=self.principal)


@ORGANIZATION_IN_PATH
class InvitationViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
    mixins.DestroyModelMixin, OrganizationChildViewSet,
):
    queryset = Invitation.objects.all()
    serializer_class = InvitationSerializer

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        return super().safely_get_queryset(queryset).select_related("invited_by")

    def create(self, request: Request, *args: object, **kwargs: object) -> Response:
        # Refuse (404, then 403) before validating the body: a caller who may not invite here
        # should not get field errors, nor learn anything about the organization.
        organization = self.get_organization()
        self.require_person("invite people")
        self.require_role(organization, Role.ADMIN)
        return super().create(request, *args, **kwargs)

    def perform_destroy(self, instance: Invitation) -> None:
        instance.withdraw(by=self.principal)

    def perform_create(self, serializer: InvitationSerializer) -> None:
        data = serializer.validated_data
        invitation, raw = Invitation.issue(self.get_organization(), data["email"], data["role"], by=self.principal)
        send_invitation(invitation, raw)
        serializer.instance = invitation


@PROJECT_IN_PATH
class ApiTokenViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
    mixins.DestroyModelMixin, TenantViewSet,
):
    """A project's API tokens. DELETE revokes (the row stays for the audit trail)."""

    queryset = ApiToken.objects.all()
    serializer_class = ApiTokenSerializer
    write_role = Role.MEMBER

    def get_project(self) -> Project:
        if not hasattr(self, "_project"):
            self._project = get_object_or_404(
                Project.objects.visible_to(self.principal).select_related("organization"),
                uuid=self.kwargs["project_uuid"],
            )
        return self._project

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        return queryset.filter(project=self.get_project()).select_related("project")

    def get_serializer_class(self) -> type[serializers.Serializer]:
        return NewApiTokenSerializer if self.action == "create" else ApiTokenSerializer

    def create(self, request: Request, *args: object, **kwargs: object) -> Response:
        # Refuse (404, then 403) before validating the body, as for invitations.
        project = self.get_project()
        self.require_person("create API tokens")
        self.require_role(project.organization, Role.MEMBER)
        return super().create(request, *args, **kwargs)

    def perform_create(self, serializer: NewApiTokenSerializer) -> None:
        project = self.get_project()
        data = serializer.validated_data
        token, raw = ApiToken.issue(
            project=project, name=data["name"], scopes=list(data["scopes"]),
            expires_at=data.get("expires_at"), by=self.principal,
        )
        token.token = raw
        serializer.instance = token

    def perform_destroy(self, instance: ApiToken) -> None:
        instance.revoke(by=self.principal)
