"""People, tenants and API tokens.

An Organization is the tenant; it owns Projects. People belong to organizations through a
Membership with a Role. Every tenant-owned model's manager is built on `TenantQuerySet`, whose
`visible_to(principal)` is the one place tenancy is enforced: a principal is a signed-in User or
an ApiToken, and sees only what its memberships (or its token's project) allow.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
import zoneinfo
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, models, transaction
from django.db.models.functions import Lower
from django.utils import timezone

from costs.money import Currency


# ---------------------------------------------------------------------------------------------
# Tenancy
# ---------------------------------------------------------------------------------------------
class Role(models.IntegerChoices):
    """Ordered so that `role >= Role.ADMIN` reads as "at least an admin"."""

    VIEWER = 10, "Viewer"
    MEMBER = 20, "Member"
    ADMIN = 30, "Admin"
    OWNER = 40, "Owner"


def require_person(principal: object, action: str) -> None:
    """People manage organizations, members, invitations and tokens; an API token only reads
    and writes data. Raise PermissionDenied (403) when the actor is not a signed-in person."""
    if not isinstance(principal, User) or not principal.is_authenticated:
        raise PermissionDenied(f"API tokens cannot {action}; sign in as a person to do it.")


class TenantQuerySet(models.QuerySet):
    """Base queryset of every tenant-owned model.

    Subclasses name the path from their model to its Organization (and Project, if any).
    `visible_to()` is the only way views reach tenant data; with no principal it raises instead
    of returning everything.
    """

    organization_path: str = "organization"
    project_path: str | None = None

    def _lookup(self, path: str, field: str) -> str:
        return f"{path}__{field}" if path else field

    def visible_to(self, principal: User | ApiToken | None) -> TenantQuerySet:
        if isinstance(principal, ApiToken):
            qs = self.filter(**{self._lookup(self.organization_path, "id"): principal.organization_id})
            if principal.project_id and self.project_path is not None:
                qs = qs.filter(**{self._lookup(self.project_path, "id"): principal.project_id})
            return qs
        if isinstance(principal, User) and principal.is_authenticated:
            return self.filter(**{self._lookup(self.organization_path, "memberships__user"): principal})
        raise PermissionDenied("No tenant context: refusing to return unscoped tenant data.")

    def dangerously_unscoped(self) -> TenantQuerySet:
        """For operators' code paths (admin, periodic tasks) that must see every tenant."""
        return self.all()


class OrganizationQuerySet(TenantQuerySet):
    organization_path = ""


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not a known time zone (e.g. UTC, Europe/London).")


class Organization(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100)
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])
    # Set by an operator in the Django admin only (no tenant form or serializer lists it): a
    # tenant that could set it would switch off the SSRF guard for itself.
    allow_private_egress = models.BooleanField(
        default=False,
        help_text="Let this organization's benchmark targets and webhooks reach private, loopback and "
        "link-local addresses (e.g. its own vLLM or Ollama on a private network). Cloud metadata "
        "addresses stay refused. TENANT_EGRESS_ALLOW_PRIVATE allows this for every organization.",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = OrganizationQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    @property
    def allows_private_egress(self) -> bool:
        """Whether requests to URLs this organization typed may reach private addresses
        (lib/egress.py): the operator's setting for all, or the admin's switch for this one."""
        return settings.TENANT_EGRESS_ALLOW_PRIVATE or self.allow_private_egress

    def role_of(self, principal: User | ApiToken | None) -> Role | None:
        """The principal's role here, or None when it has no access at all.

        A token is never more than a member, whatever its creator's role: people manage
        organizations, tokens only read and write data.
        """
        if isinstance(principal, ApiToken):
            if principal.organization_id != self.pk:
                return None
            # Recording usage (ingest, gateway) is writing data too; each endpoint still checks
            # its own scope, so an ingest-only token cannot change anything else.
            writes = (ApiToken.Scope.WRITE, ApiToken.Scope.INGEST, ApiToken.Scope.GATEWAY)
            return Role.MEMBER if any(principal.has_scope(scope) for scope in writes) else Role.VIEWER
        if principal is None or not principal.is_authenticated:
            return None
        role = self.memberships.filter(user=principal).values_list("role", flat=True).first()
        return Role(role) if role is not None else None

    def require_role(self, principal: User | ApiToken | None, minimum: Role) -> Role:
        """Raise PermissionDenied (403) unless the principal has at least `minimum` here."""
        role = self.role_of(principal)
        if role is None or role < minimum:
            raise PermissionDenied(f"This needs the {minimum.label.lower()} role or higher in {self.name}.")
        return role

    def add_member(self, user: User, role: Role) -> Membership:
        membership, _ = Membership.objects.get_or_create(
            organization=self, user=user, defaults={"role": role}
        )
        return membership

    def remove(self, *, by: User) -> None:
        """Delete the organization and everything it owns: its owners only, in person."""
        require_person(by, "delete organizations")
        self.require_role(by, Role.OWNER)
        self.delete()

    @classmethod
    def create_for_owner(cls, owner: User, name: str, project_name: str = "Default") -> Organization:
        with transaction.atomic():
            organization = cls.objects.create(name=name)
            organization.add_member(owner, Role.OWNER)
            Project.objects.create(organization=organization, name=project_name)
        return organization


class ProjectQuerySet(TenantQuerySet):
    project_path = ""


class Project(models.Model):
    """A product or environment inside an organization; owns API tokens and (later) data."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="projects")
    name = models.CharField(max_length=100)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = ProjectQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            # The project switcher lists projects by name; two with one name would be ambiguous.
            models.UniqueConstraint(
                "organization", Lower("name"), name="project_unique_name_per_organization"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.organization.name} / {self.name}"

    @classmethod
    def create_in(cls, organization: Organization, *, name: str, by: User | ApiToken) -> Project:
        """A new project; admins and owners add them (pages and API alike)."""
        organization.require_role(by, Role.ADMIN)
        return cls.objects.create(organization=organization, name=name)

    def remove(self, *, by: User | ApiToken) -> None:
        """Delete this project and its data. An organization keeps at least one project (its
        pages, tokens and the home redirect all assume one), so removing the last is refused."""
        self.organization.require_role(by, Role.ADMIN)
        with transaction.atomic():
            # Lock the organization's row: two removals of its last two projects at the same
            # moment take turns here, and the second then counts one project left.
            list(Organization.objects.select_for_update().filter(pk=self.organization_id).values_list("pk"))
            if not Project.objects.filter(organization_id=self.organization_id).exclude(pk=self.pk).exists():
                raise LastProjectError("An organization keeps at least one project; create another first.")
            self.delete()


class LastProjectError(ValidationError):
    pass


class MembershipQuerySet(TenantQuerySet):
    pass


class LastOwnerError(ValidationError):
    pass


class Membership(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.PositiveSmallIntegerField(choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = MembershipQuerySet.as_manager()

    class Meta:
        ordering = ["-role", "created_at"]
        constraints = [
            models.UniqueConstraint("organization", "user", name="membership_unique_user_per_organization"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} as {self.get_role_display()}"

    def _lock_owners(self) -> list[int]:
        # Locking the owner rows serializes two owners demoting each other at the same moment,
        # which could otherwise leave the organization with none.
        return list(
            Membership.objects.select_for_update()
            .filter(organization_id=self.organization_id, role=Role.OWNER)
            .values_list("pk", flat=True)
        )

    def change_role(self, new_role: Role, *, by: User) -> None:
        require_person(by, "change roles")
        actor_role = self.organization.require_role(by, Role.ADMIN)
        if Role.OWNER in (new_role, self.role) and actor_role < Role.OWNER:
            raise PermissionDenied("Only an owner can grant or take away the owner role.")
        with transaction.atomic():
            owners = self._lock_owners()
            if self.role == Role.OWNER and new_role != Role.OWNER and owners == [self.pk]:
                raise LastOwnerError("The last owner cannot be demoted; make someone else an owner first.")
            self.role = new_role
            self.save(update_fields=["role"])

    def remove(self, *, by: User) -> None:
        """Remove this member; anyone may leave, admins may remove non-owners, owners anyone."""
        require_person(by, "remove members")
        if by.pk != self.user_id:
            actor_role = self.organization.require_role(by, Role.ADMIN)
            if self.role == Role.OWNER and actor_role < Role.OWNER:
                raise PermissionDenied("Only an owner can remove an owner.")
        with transaction.atomic():
            owners = self._lock_owners()
            if self.role == Role.OWNER and owners == [self.pk]:
                raise LastOwnerError("The last owner cannot be removed; make someone else an owner first.")
            self.delete()


def hash_secret(raw: str) -> str:
    """SHA-256 of a high-entropy secret. No salt or stretching is needed: the secrets we hash
    carry 256 random bits, so they cannot be guessed from the hash."""
    return hashlib.sha256(raw.encode()).hexdigest()


class InvitationQuerySet(TenantQuerySet):
    def pending(self) -> InvitationQuerySet:
        return self.filter(accepted_at__isnull=True, expires_at__gt=timezone.now())


class Invitation(models.Model):
    VALID_FOR = timedelta(days=7)

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.PositiveSmallIntegerField(choices=Role.choices, default=Role.MEMBER)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    objects = InvitationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Re-inviting replaces the open invitation instead of stacking up links.
            models.UniqueConstraint(
                "organization",
                Lower("email"),
                condition=models.Q(accepted_at__isnull=True),
                name="invitation_one_open_per_email",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.email} to {self.organization}"

    @property
    def status(self) -> str:
        if self.accepted_at:
            return "accepted"
        return "expired" if self.expires_at <= timezone.now() else "pending"

    @classmethod
    def issue(cls, organization: Organization, email: str, role: Role, *, by: User) -> tuple[Invitation, str]:
        """Create (or replace) the invitation for `email`; returns it with its raw link token."""
        require_person(by, "invite people")
        actor_role = organization.require_role(by, Role.ADMIN)
        if role == Role.OWNER and actor_role < Role.OWNER:
            raise PermissionDenied("Only an owner can invite another owner.")
        email = email.strip().lower()
        if organization.memberships.filter(user__email__iexact=email).exists():
            raise ValidationError({"email": f"{email} is already a member of {organization.name}."})
        raw = secrets.token_urlsafe(32)
        with transaction.atomic():
            cls.objects.filter(organization=organization, email__iexact=email, accepted_at__isnull=True).delete()
            invitation = cls.objects.create(
                organization=organization,
                email=email,
                role=role,
                invited_by=by,
                token_hash=hash_secret(raw),
                expires_at=timezone.now() + cls.VALID_FOR,
            )
        return invitation, raw

    def withdraw(self, *, by: User | ApiToken) -> None:
        """Delete the invitation (its link stops working); admins and owners do it."""
        self.organization.require_role(by, Role.ADMIN)
        self.delete()

    @classmethod
    def from_token(cls, raw: str) -> Invitation | None:
        return cls.objects.select_related("organization").filter(token_hash=hash_secret(raw)).first()

    def accept(self, user: User) -> Membership:
        if self.status != "pending":
            raise ValidationError(f"This invitation is {self.status}.")
        if user.email.lower() != self.email.lower():
            raise PermissionDenied(
                f"This invitation is for {self.email}; you are signed in as {user.email}."
            )
        with transaction.atomic():
            # Only one of two concurrent accepts changes the row; the other sees 0 and stops.
            claimed = Invitation.objects.filter(pk=self.pk, accepted_at__isnull=True).update(
                accepted_at=timezone.now(), accepted_by=user
            )
            if not claimed:
                raise ValidationError("This invitation has already been accepted.")
            membership = self.organization.add_member(user, Role(self.role))
        return membership


# ---------------------------------------------------------------------------------------------
# API tokens
# ---------------------------------------------------------------------------------------------
class ApiTokenQuerySet(TenantQuerySet):
    project_path = "project"

    def active(self) -> ApiTokenQuerySet:
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


class ApiToken(models.Model):
    """A project's (or organization's) key to the API.

    The raw token is `pk_live_<10-char lookup prefix><43-char secret>`. We keep the prefix in
    clear (to find the row and show it) and a SHA-256 of the whole token; the raw value exists
    only in the response that created it.
    """

    TYPE_PREFIX = "pk_live_"
    LOOKUP_LENGTH = 10
    # Writing last_used_at on every request would turn every API read into a write.
    LAST_USED_RESOLUTION = timedelta(minutes=1)

    class Scope(models.TextChoices):
        READ = "read", "Read"
        WRITE = "write", "Write"
        INGEST = "ingest", "Ingest"
        GATEWAY = "gateway", "Gateway"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_tokens")
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, null=True, blank=True, related_name="api_tokens",
        help_text="Empty for an organization-wide token.",
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=32, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.masked})"

    @property
    def masked(self) -> str:
        return f"{self.prefix}…"

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and not self.is_expired

    def has_scope(self, scope: str) -> bool:
        # Write implies read, as in most APIs: a key that may change data may also see it.
        return scope in self.scopes or (scope == self.Scope.READ and self.Scope.WRITE in self.scopes)

    def clean(self) -> None:
        unknown = set(self.scopes) - set(self.Scope.values)
        if unknown or not self.scopes:
            raise ValidationError({"scopes": f"Choose one or more of {', '.join(self.Scope.values)}."})
        if self.expires_at and self.expires_at <= timezone.now():
            raise ValidationError({"expires_at": "The expiry must be in the future."})

    @classmethod
    def issue(
        cls,
        *,
        project: Project,
        name: str,
        scopes: list[str],
        by: User,
        expires_at: datetime | None = None,
    ) -> tuple[ApiToken, str]:
        """Create a token for `project`; returns it with the raw value, shown to the user once."""
        require_person(by, "create API tokens")  # a leaked token must not mint more
        project.organization.require_role(by, Role.MEMBER)
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
        for _attempt in range(5):
            lookup = "".join(secrets.choice(alphabet) for _ in range(cls.LOOKUP_LENGTH))
            raw = f"{cls.TYPE_PREFIX}{lookup}{secrets.token_urlsafe(32)}"
            token = cls(
                organization=project.organization,
                project=project,
                name=name,
                prefix=raw[: len(cls.TYPE_PREFIX) + cls.LOOKUP_LENGTH],
                secret_hash=hash_secret(raw),
                scopes=sorted(set(scopes)),
                created_by=by,
                expires_at=expires_at,
            )
            token.full_clean(exclude=["prefix", "secret_hash"])
            try:
                with transaction.atomic():
                    token.save()
            except IntegrityError:  # a prefix collision: astronomically rare, just draw again
                continue
            return token, raw
        raise RuntimeError("Could not allocate a unique API token prefix.")

    @classmethod
    def authenticate(cls, raw: str) -> ApiToken | None:
        """The token for a raw value, or None. Revoked/expired tokens are returned so the caller
        can say why they fail."""
        prefix = raw[: len(cls.TYPE_PREFIX) + cls.LOOKUP_LENGTH]
        if not raw.startswith(cls.TYPE_PREFIX) or len(raw) < len(prefix) + 20:
            return None
        token = cls.objects.select_related("organization", "project").filter(prefix=prefix).first()
        if token is None or not secrets.compare_digest(token.secret_hash, hash_secret(raw)):
            return None
        return token

    def record_use(self) -> None:
        now = timezone.now()
        if self.last_used_at and now - self.last_used_at < self.LAST_USED_RESOLUTION:
            return
        # Conditional update: of many concurrent requests, one writes per resolution period.
        stale = models.Q(last_used_at__isnull=True) | models.Q(last_used_at__lt=now - self.LAST_USED_RESOLUTION)
        ApiToken.objects.filter(stale, pk=self.pk).update(last_used_at=now)
        self.last_used_at = now

    def revoke(self, *, by: User) -> None:
        require_person(by, "revoke API tokens")
        self.organization.require_role(by, Role.MEMBER)
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])


# ---------------------------------------------------------------------------------------------
# Users
# ---------------------------------------------------------------------------------------------
class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra: object) -> User:
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra: object) -> User:
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra: object) -> User:
        extra.update(is_staff=True, is_superuser=True)
        return self._create_user(email, password, **extra)


class User(AbstractUser):
    """A person. Email is the login; there is no username."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    username = None  # type: ignore[assignment]
    email = models.EmailField("email address", unique=True)
    # Every money figure this user sees (pages and API) is shown in it; stored amounts stay USD.
    display_currency = models.CharField(max_length=3, choices=Currency.choices, default=Currency.USD)
    # Alerts raised after this are "unread" (the badge on the bell); opening the alerts page moves it.
    alerts_seen_at = models.DateTimeField(null=True, blank=True, editable=False)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    objects = UserManager()

    class Meta:
        ordering = ["email"]
        constraints = [
            models.UniqueConstraint(Lower("email"), name="user_unique_email_ci"),
        ]

    def __str__(self) -> str:
        return self.email

    @property
    def display_name(self) -> str:
        return self.get_full_name() or self.email
