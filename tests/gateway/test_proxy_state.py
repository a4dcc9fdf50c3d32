"""The configuration snapshots the hot path serves from: no database on a warm cache, Redis shared
across processes without provider keys in clear, the local copy's lifetime, invalidation on
every change (and no stale snapshot after a racing rebuild), the egress policy reaching the
connector, last_used_at, and the whole gateway on the in-process stand-in for Redis."""

from __future__ import annotations

import asyncio
import time

import fakeredis
import httpx2
import openai
import pytest
from django.test import override_settings

from accounts.models import ApiToken
from gateway import recorder, state
from gateway import redis as gateway_redis
from gateway.models import Connection, RouteUpstream
from gateway.proxy import gateway

HELLO = [{"role": "user", "content": "hello"}]


def run(coroutine_function):
    """Run in a fresh event loop, closing what the gateway opened in it."""
    async def main():
        try:
            return await coroutine_function()
        finally:
            await gateway.close()

    return asyncio.run(main())


class Builds:
    """Counts snapshot builds (each one is a round of queries)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tokens = self.projects = 0
        build_token, build_project = state.build_token_state, state.build_project_state

        def token(prefix):
            self.tokens += 1
            return build_token(prefix)

        def project(project_id, now=None):
            self.projects += 1
            return build_project(project_id, now)

        monkeypatch.setattr(state, "build_token_state", token)
        monkeypatch.setattr(state, "build_project_state", project)


@pytest.fixture
def builds(monkeypatch):
    return Builds(monkeypatch)


def prefix_of(world) -> str:
    return world.raw_token[: len(ApiToken.TYPE_PREFIX) + ApiToken.LOOKUP_LENGTH]


def test_a_warm_snapshot_needs_no_database(gateway_world, builds):
    prefix, project_id = prefix_of(gateway_world), gateway_world.project.id

    async def fetch_three_times(store):
        r = gateway_redis.async_client()
        for _ in range(3):
            token = await store.token(r, prefix)
            project = await store.project(r, token.project_id)
        return token, project

    token, project = run(lambda: fetch_three_times(state.StateStore()))
    assert (builds.tokens, builds.projects) == (1, 1)
    assert (token.token_id, project.project_id) == (gateway_world.token.id, project_id)
    assert sorted(project.routes) == ["claude-3-5-haiku", "gpt-4o-mini", "text-embedding-3-small"]

    run(lambda: fetch_three_times(state.StateStore()))  # another process: Redis has them
    assert (builds.tokens, builds.projects) == (1, 1)


def test_concurrent_misses_build_once(gateway_world, builds):
    async def many():
        store, r = state.StateStore(), gateway_redis.async_client()
        return await asyncio.gather(*(store.project(r, gateway_world.project.id) for _ in range(20)))

    projects = run(many)
    assert builds.projects == 1 and len({id(p) for p in projects}) == 1


def test_redis_holds_the_ciphertext_of_provider_keys_never_the_key(gateway_world):
    project = run(lambda: state.StateStore().project(gateway_redis.async_client(), gateway_world.project.id))

    raw = gateway_redis.sync_client().get(state.project_key(gateway_world.project.id))
    assert b"sk-sim" not in raw
    [upstream] = project.routes["gpt-4o-mini"].upstreams
    assert upstream.api_key == "sk-sim" and upstream.encrypted_api_key in raw.decode()
    assert "sk-sim" not in repr(upstream)


@override_settings(GATEWAY_STATE_LOCAL_TTL_S=1.0)
def test_the_local_copy_is_trusted_for_the_local_ttl_only(gateway_world):
    clock = [1000.0]
    store = state.StateStore(clock=lambda: clock[0])
    prefix = prefix_of(gateway_world)

    async def revoked() -> bool:
        return (await store.token(gateway_redis.async_client(), prefix)).revoked

    assert run(revoked) is False
    gateway_world.token.revoke(by=gateway_world.personas.owner)
    clock[0] += 0.9
    assert run(revoked) is False  # the process's copy, still within its second
    clock[0] += 0.2
    assert run(revoked) is True


def test_a_snapshot_built_before_a_change_is_not_served_after_it(gateway_world, builds):
    """A slow rebuild that read the old rows writes its snapshot after the change retired the
    old one: the generation it carries is stale, so it is rebuilt instead of served."""
    project_id = gateway_world.project.id
    fetch = lambda: state.StateStore().project(gateway_redis.async_client(), project_id)  # noqa: E731
    run(fetch)
    stale = gateway_redis.sync_client().get(state.project_key(project_id))

    gateway_world.route("new-route", [(gateway_world.openai_connection, "sim-fast")])  # retires the snapshot
    gateway_redis.sync_client().set(state.project_key(project_id), stale)  # the slow rebuild lands

    assert "new-route" in run(fetch).routes
    assert builds.projects == 2


def generations(world) -> tuple[int, int, int]:
    client = gateway_redis.sync_client()
    values = client.mget(state.token_generation_key(prefix_of(world)), state.project_generation_key(world.project.id),
                         state.global_generation_key())
    return tuple(int(v or 0) for v in values)


@pytest.mark.parametrize("change", ["route", "upstream", "connection", "settings", "limit", "token", "budget",
                                    "organization", "price", "project"])
def test_every_change_retires_the_snapshots_it_feeds(gateway_world, change):
    from alerts.models import Budget
    from benchmarks.models import Price
    from gateway.models import RateLimit

    before = generations(gateway_world)
    world = gateway_world
    if change == "route":
        world.route("another", [(world.openai_connection, "sim-fast")])
    elif change == "upstream":
        RouteUpstream.objects.filter(route=world.routes["gpt-4o-mini"]).update(weight=2)
        RouteUpstream.objects.get(route=world.routes["gpt-4o-mini"]).save()
    elif change == "connection":
        Connection.objects.get(pk=world.openai_connection.pk).save()
    elif change == "settings":
        world.settings(cache_enabled=True)
    elif change == "limit":
        RateLimit.objects.create(project=world.project, requests_per_minute=10)
    elif change == "token":
        world.token.revoke(by=world.personas.owner)
    elif change == "budget":
        Budget.objects.create(organization=world.org, name="org-wide", amount="10")
    elif change == "organization":
        world.org.save()
    elif change == "price":
        Price.objects.filter(model__name="sim-fast").first().save()
    elif change == "project":
        world.project.save()
    after = generations(gateway_world)

    changed = {name for name, b, a in zip(("token", "project", "all"), before, after, strict=True) if a != b}
    assert changed == ({"token"} if change == "token" else {"all"} if change == "price" else {"project"})


def test_a_new_route_and_a_disabled_connection_are_seen_by_the_next_request(gateway_world, openai_client):
    gateway_world.route("fresh", [(gateway_world.openai_connection, "sim-fast")])
    assert openai_client.chat.completions.create(model="fresh", messages=HELLO).model == "sim-fast"

    Connection.objects.filter(pk=gateway_world.openai_connection.pk).update(is_enabled=False)
    Connection.objects.get(pk=gateway_world.openai_connection.pk).save()

    with pytest.raises(openai.InternalServerError) as raised:
        openai_client.chat.completions.create(model="fresh", messages=HELLO)
    assert raised.value.status_code == 503 and raised.value.response.json()["error"]["code"] == "no_upstream"


def test_the_organizations_private_egress_switch_reaches_the_upstream_connection(gateway_world, start_gateway):
    gateway = start_gateway(TENANT_EGRESS_ALLOW_PRIVATE="false")
    client = openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key=gateway_world.raw_token, max_retries=0)

    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert raised.value.status_code == 502
    assert "Pulse does not send requests there" in raised.value.response.json()["error"]["message"]
    assert gateway_world.simulator.requests() == []

    gateway_world.org.allow_private_egress = True  # an operator allowed its self-hosted models
    gateway_world.org.save()

    assert client.chat.completions.create(model="gpt-4o-mini", messages=HELLO).model == "sim-fast"


def test_last_used_at_advances_off_the_hot_path(gateway_world, openai_client):
    assert gateway_world.token.last_used_at is None

    openai_client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)

    deadline = time.monotonic() + 15
    while ApiToken.objects.get(pk=gateway_world.token.pk).last_used_at is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ApiToken.objects.get(pk=gateway_world.token.pk).last_used_at is not None


@pytest.fixture
def in_process_redis():
    """The gateway's Redis as `make run` has it: no GATEWAY_REDIS_URL, one in-process stand-in."""
    gateway_redis.reset_for_fork()
    with override_settings(GATEWAY_REDIS_URL=""):
        yield
        gateway_redis.reset_for_fork()
    gateway_redis.reset_for_fork()


def test_the_gateway_works_on_the_in_process_stand_in_for_redis(gateway_world, in_process_redis):
    from django.conf import settings

    from config.asgi import application

    async def calls():
        transport = httpx2.ASGITransport(app=application)
        async with openai.AsyncOpenAI(base_url="http://gateway.test/v1", api_key=gateway_world.raw_token, max_retries=0,
                                      http_client=httpx2.AsyncClient(transport=transport)) as client:
            plain = await client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
            streamed = [chunk async for chunk in await client.chat.completions.create(
                model="gpt-4o-mini", messages=HELLO, stream=True)]
        r = gateway_redis.async_client()
        for _ in range(500):  # the records are written after each response's end
            entries = await r.xrange(settings.GATEWAY_CALL_STREAM)
            if len(entries) == 2:
                break
            await asyncio.sleep(0.01)
        return plain, streamed, entries, isinstance(r, fakeredis.FakeAsyncRedis)

    plain, streamed, entries, in_process = run(calls)

    assert in_process
    assert plain.model == "sim-fast" and streamed[-1].choices[0].finish_reason == "stop"
    records = [recorder.decode(fields) for _, fields in entries]
    assert [record.event["streamed"] for record in records] == [False, True]
