"""The base tenant viewset cannot be bypassed: a subclass that overrides get_queryset() or
get_object() fails when its class is defined (at import), not in production. Scoping goes only
through the hook `safely_get_queryset(queryset)`, which receives the already-scoped queryset."""

from __future__ import annotations

import pytest
from django.db.models import QuerySet
from rest_framework.generics import GenericAPIView

from accounts.api import TenantViewSet
from accounts.models import Project
from accounts.tenancy import TenantScopedViewSetMixin


@pytest.mark.parametrize("method", ["get_queryset", "get_object"])
def test_a_subclass_overriding_a_guarded_method_is_refused_at_definition(method):
    with pytest.raises(TypeError, match=rf"Leaky\.{method}\(\) would bypass tenant scoping.*safely_get_queryset"):
        type("Leaky", (TenantViewSet,), {"queryset": Project.objects.all(), method: lambda self: None})


def test_an_override_deeper_down_the_hierarchy_is_refused_too():
    class Scoped(TenantViewSet):
        queryset = Project.objects.all()

    with pytest.raises(TypeError, match="get_queryset"):

        class Widened(Scoped):
            def get_queryset(self) -> QuerySet:
                return Project.objects.all()


def test_a_mixin_listed_before_the_base_that_brings_get_queryset_is_refused():
    class Everything:
        def get_queryset(self) -> QuerySet:
            return Project.objects.all()

    with pytest.raises(TypeError, match=r"Everything\.get_queryset\(\) would bypass tenant scoping in Sneaky"):

        class Sneaky(Everything, TenantViewSet):
            queryset = Project.objects.all()


def test_the_mixin_on_a_plain_generic_view_is_guarded_as_well():
    with pytest.raises(TypeError, match="get_object"):

        class Stats(TenantScopedViewSetMixin, GenericAPIView):
            def get_object(self) -> object:
                return None


def test_narrowing_through_the_hook_is_allowed_and_gets_the_scoped_queryset():
    class Narrowed(TenantViewSet):
        queryset = Project.objects.all()

        def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
            return queryset.filter(name="Production")

    assert Narrowed.get_queryset is TenantScopedViewSetMixin.get_queryset
