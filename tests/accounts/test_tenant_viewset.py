"""The base tenant viewset cannot be bypassed: a subclass that overrides get_queryset() or
get_object() fails when its class is defined (at import), not in production. Scoping goes only
through the hook `safely_get_queryset(queryset)`, which receives the already-scoped queryset."""

from __future__ import annotations

import pytest
from django.db.models import QuerySet
from rest_framework import mixins, viewsets
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


def test_a_base_listed_after_the_mixin_that_brings_get_object_is_refused():
    """The mixin defines no get_object(), so a base behind it (but ahead of DRF's) would win."""

    class FetchesAnything:
        def get_object(self) -> object:
            return Project.objects.get()

    with pytest.raises(TypeError, match=r"FetchesAnything\.get_object\(\) would bypass tenant scoping in Behind"):

        class Behind(TenantScopedViewSetMixin, FetchesAnything, viewsets.GenericViewSet):
            queryset = Project.objects.all()


def test_a_base_listed_after_the_mixin_that_brings_get_queryset_is_refused():
    class Everything:
        def get_queryset(self) -> QuerySet:
            return Project.objects.all()

    with pytest.raises(TypeError, match=r"Everything\.get_queryset\(\)"):

        class Behind(TenantScopedViewSetMixin, Everything, GenericAPIView):
            queryset = Project.objects.all()


def test_a_base_class_of_a_base_is_found_too():
    class Everything:
        def get_queryset(self) -> QuerySet:
            return Project.objects.all()

    class Harmless(Everything):
        pass

    with pytest.raises(TypeError, match=r"Everything\.get_queryset\(\) would bypass tenant scoping in Deep"):

        class Deep(TenantViewSet, Harmless):
            queryset = Project.objects.all()


def test_drfs_own_classes_ahead_of_the_mixin_are_refused():
    """GenericAPIView.get_queryset() ahead of the mixin would win and return every row."""
    with pytest.raises(TypeError, match=r"GenericAPIView\.get_queryset\(\).*before DRF's classes"):

        class Backwards(viewsets.GenericViewSet, TenantScopedViewSetMixin):
            queryset = Project.objects.all()


def test_drfs_classes_behind_the_mixin_and_list_retrieve_overrides_are_allowed():
    class Listing(TenantScopedViewSetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
        queryset = Project.objects.all()

        def list(self, request, *args, **kwargs):
            return super().list(request, *args, **kwargs)

        def retrieve(self, request, *args, **kwargs):
            return super().retrieve(request, *args, **kwargs)

    assert Listing.get_queryset is TenantScopedViewSetMixin.get_queryset
    assert Listing.get_object is GenericAPIView.get_object  # DRF's: looks up in get_queryset()


def test_every_viewset_in_the_project_resolves_both_methods_to_the_scoped_ones():
    """Whatever the MRO rules, the methods that actually run are the mixin's and DRF's."""
    import accounts.api  # noqa: F401 (the apps' viewsets, defined at import)
    import alerts.api  # noqa: F401
    import benchmarks.api  # noqa: F401
    import costs.api  # noqa: F401

    def subclasses(klass: type) -> list[type]:
        return [klass, *(deep for sub in klass.__subclasses__() for deep in subclasses(sub))]

    apps = {"accounts", "alerts", "benchmarks", "costs", "gateway", "dashboard"}  # not the refused ones above
    viewsets_found = [klass for klass in subclasses(TenantScopedViewSetMixin)[1:] if klass.__module__.split(".")[0] in apps]
    assert len(viewsets_found) > 10
    for viewset in viewsets_found:
        assert viewset.get_queryset is TenantScopedViewSetMixin.get_queryset, viewset
        assert viewset.get_object is GenericAPIView.get_object, viewset
