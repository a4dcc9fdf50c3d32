from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.http import HttpRequest

from .models import ApiToken, Invitation, Membership, Organization, Project, User


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]
    fields = ["user", "role", "created_at"]
    readonly_fields = ["created_at"]


class ProjectInline(admin.TabularInline):
    model = Project
    extra = 0
    fields = ["name", "uuid", "created_at"]
    readonly_fields = ["uuid", "created_at"]
    show_change_link = True


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    ordering = ["email"]
    list_display = ["email", "first_name", "last_name", "is_active", "is_staff", "date_joined", "last_login"]
    list_filter = ["is_active", "is_staff", "is_superuser", "date_joined"]
    search_fields = ["email", "first_name", "last_name"]
    readonly_fields = ["id", "date_joined", "last_login"]
    fieldsets = [
        (None, {"fields": ["id", "email", "password"]}),
        ("Personal info", {"fields": ["first_name", "last_name"]}),
        ("Permissions", {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]}),
        ("Dates", {"fields": ["date_joined", "last_login"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]})]


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "uuid", "time_zone", "member_count", "allow_private_egress", "created_at"]
    search_fields = ["name", "uuid", "memberships__user__email"]
    list_filter = ["time_zone", "allow_private_egress", "created_at"]
    readonly_fields = ["uuid", "created_at"]
    inlines = [MembershipInline, ProjectInline]

    def get_queryset(self, request: HttpRequest):
        from django.db.models import Count

        return super().get_queryset(request).annotate(_member_count=Count("memberships", distinct=True))

    @admin.display(ordering="_member_count", description="members")
    def member_count(self, obj: Organization) -> int:
        return obj._member_count


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "uuid", "created_at"]
    list_select_related = ["organization"]
    search_fields = ["name", "uuid", "organization__name"]
    list_filter = ["created_at"]
    readonly_fields = ["uuid", "created_at"]
    autocomplete_fields = ["organization"]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "organization", "role", "created_at"]
    list_select_related = ["user", "organization"]
    list_filter = ["role"]
    search_fields = ["user__email", "organization__name"]
    autocomplete_fields = ["user", "organization"]
    readonly_fields = ["uuid", "created_at"]


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["email", "organization", "role", "status", "invited_by", "created_at", "expires_at"]
    list_select_related = ["organization", "invited_by"]
    list_filter = ["role", "created_at", "expires_at"]
    search_fields = ["email", "organization__name"]
    # The link's token exists only in the email; only its hash is stored, and not shown here.
    exclude = ["token_hash"]
    readonly_fields = ["uuid", "created_at", "accepted_at", "accepted_by"]
    autocomplete_fields = ["organization", "invited_by"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # invitations need an emailed token; create them in the app or the API


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "masked", "organization", "project", "scopes", "created_at", "last_used_at", "expires_at", "revoked_at"]
    list_select_related = ["organization", "project"]
    list_filter = ["revoked_at", "created_at", "expires_at"]
    search_fields = ["name", "prefix", "organization__name", "project__name"]
    # Never the secret: only the public prefix; the hash is excluded too.
    fields = ["name", "prefix", "organization", "project", "scopes", "created_by", "created_at", "last_used_at", "expires_at", "revoked_at"]
    readonly_fields = ["prefix", "organization", "project", "scopes", "created_by", "created_at", "last_used_at"]
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # the raw token must be shown to its owner once; tokens are made in the app

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request: HttpRequest, queryset) -> None:
        from django.utils import timezone

        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {count} token(s).")
