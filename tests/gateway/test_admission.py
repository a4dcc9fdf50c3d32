"""Admission: rate limits (RPM/TPM/RPD/TPD of a token and of its project) and hard-budget
reservations, decided in one Lua step. Every test runs against the real Redis and against the
in-process stand-in; the clock is passed in (`now=`), so nothing waits."""

from __future__ import annotations

import time
import uuid

import pytest

from gateway import admission
from gateway.admission import (
    RESERVATION_TTL_S,
    admit,
    covering_budgets,
    ledger_view,
    max_cost_micro_usd,
    openai_duration,
    settle,
)
from gateway.redis import key, sync_client
from gateway.state import UpstreamState

from . import backends
from .backends import budget_state, limits, project_state, run

gw_backend = backends.gw_backend  # every test taking it runs on the real Redis and on the stand-in

TOKEN = 11
OTHER_TOKEN = 12
NOW = time.time()


def admit_one(project, *, token_id=TOKEN, estimated_tokens=10, budgets=(), max_cost=0, now=NOW, request_id=None):
    return run(lambda r: admit(
        r, project=project, token_id=token_id, estimated_tokens=estimated_tokens, budgets=list(budgets),
        max_cost_micro_usd=max_cost, now=now, token_prefix="pk_live_ab12",
        request_id=request_id or uuid.uuid4().hex,
    ))


def settle_one(decision, *, actual_tokens, actual_cost=0):
    async def go(r):
        pipe = r.pipeline(transaction=False)
        charges = settle(decision, actual_tokens=actual_tokens, actual_cost_micro_usd=actual_cost, pipeline=pipe)
        await pipe.execute()
        return charges

    return run(go)


def gateway_keys() -> list[bytes]:
    return list(sync_client().scan_iter(match=key("*")))


# ------------------------------------------------------------------------------ no limits


def test_no_limit_and_no_budget_admits_without_touching_redis(gw_backend):
    decision = admit_one(project_state())
    assert decision.allowed and decision.reason is None
    assert decision.headers == {} and decision.reservation is None
    assert gateway_keys() == []
    assert settle_one(decision, actual_tokens=50) == {}


# ------------------------------------------------------------------------------ requests


def test_rpm_admits_up_to_the_limit_then_refuses_with_retry_after_and_openai_headers(gw_backend):
    project = project_state(token_limits={TOKEN: limits(rpm=3)})
    first = admit_one(project)
    assert first.allowed
    assert first.headers == {
        "x-ratelimit-limit-requests": "3", "x-ratelimit-remaining-requests": "2", "x-ratelimit-reset-requests": "20s",
    }
    assert admit_one(project).allowed
    third = admit_one(project)
    assert third.headers["x-ratelimit-remaining-requests"] == "0"
    assert third.headers["x-ratelimit-reset-requests"] == "1m0s"

    refused = admit_one(project)
    assert not refused.allowed and refused.reason == "rate_limit"
    assert refused.retry_after_s == pytest.approx(20.0)
    assert refused.reservation is None
    assert refused.message.startswith("Rate limit of 3 requests per minute for token pk_live_ab12… reached")
    assert "Try again in 20s" in refused.message
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"


def test_the_bucket_refills_continuously(gw_backend):
    project = project_state(token_limits={TOKEN: limits(rpm=3)})
    for _ in range(3):
        assert admit_one(project).allowed
    assert not admit_one(project, now=NOW + 19.9).allowed
    later = admit_one(project, now=NOW + 20)
    assert later.allowed and later.headers["x-ratelimit-remaining-requests"] == "0"
    # a minute later the three have drained away: this one is alone in the bucket
    assert admit_one(project, now=NOW + 80).headers["x-ratelimit-remaining-requests"] == "2"


def test_a_project_limit_is_shared_by_its_tokens(gw_backend):
    project = project_state(project_limits=limits(rpm=2))
    assert admit_one(project, token_id=TOKEN).allowed
    assert admit_one(project, token_id=OTHER_TOKEN).allowed
    refused = admit_one(project, token_id=TOKEN)
    assert refused.reason == "rate_limit"
    assert "2 requests per minute for this project" in refused.message


def test_a_token_limit_does_not_touch_other_tokens(gw_backend):
    project = project_state(token_limits={TOKEN: limits(rpm=1)})
    assert admit_one(project, token_id=TOKEN).allowed
    assert not admit_one(project, token_id=TOKEN).allowed
    other = admit_one(project, token_id=OTHER_TOKEN)
    assert other.allowed and other.headers == {}


def test_requests_per_day_is_a_rolling_24_hours(gw_backend):
    project = project_state(token_limits={TOKEN: limits(rpd=2)})
    assert admit_one(project).allowed
    second = admit_one(project)
    assert second.headers["x-ratelimit-reset-requests"] == "24h0m0s"
    refused = admit_one(project, now=NOW + 3600)
    assert refused.reason == "rate_limit" and "2 requests per day" in refused.message
    assert refused.retry_after_s == pytest.approx(11 * 3600)
    assert admit_one(project, now=NOW + 12 * 3600).allowed


def test_headers_show_the_tightest_request_limit(gw_backend):
    project = project_state(project_limits=limits(rpm=5), token_limits={TOKEN: limits(rpm=100, rpd=1000)})
    decision = admit_one(project)
    assert decision.headers["x-ratelimit-limit-requests"] == "5"
    assert decision.headers["x-ratelimit-remaining-requests"] == "4"


# ------------------------------------------------------------------------------ tokens


def test_tpm_counts_the_estimate_and_refuses_what_does_not_fit(gw_backend):
    project = project_state(token_limits={TOKEN: limits(tpm=1000)})
    first = admit_one(project, estimated_tokens=600)
    assert first.headers == {
        "x-ratelimit-limit-tokens": "1000", "x-ratelimit-remaining-tokens": "400", "x-ratelimit-reset-tokens": "36s",
    }
    refused = admit_one(project, estimated_tokens=600)
    assert refused.reason == "rate_limit"
    assert refused.retry_after_s == pytest.approx(12.0)  # 200 tokens over, at 1000 a minute
    assert "1,000 tokens per minute" in refused.message and "requested 600" in refused.message
    assert admit_one(project, estimated_tokens=400).allowed


def test_settle_corrects_the_token_estimate_with_the_real_count(gw_backend):
    project = project_state(token_limits={TOKEN: limits(tpm=1000)}, project_limits=limits(tpd=10_000))
    first = admit_one(project, estimated_tokens=900)
    assert not admit_one(project, estimated_tokens=900).allowed
    settle_one(first, actual_tokens=100)
    second = admit_one(project, estimated_tokens=900)
    assert second.allowed
    assert second.headers["x-ratelimit-remaining-tokens"] == "0"  # 100 real + 900 estimated
    settle_one(second, actual_tokens=1500)  # more than estimated: the bucket owes it
    assert admit_one(project, estimated_tokens=1, now=NOW + 36).reason == "rate_limit"


def test_a_request_larger_than_a_token_limit_is_refused_for_good(gw_backend):
    project = project_state(token_limits={TOKEN: limits(tpm=1000)})
    refused = admit_one(project, estimated_tokens=2000)
    assert refused.reason == "rate_limit" and refused.retry_after_s is None
    assert refused.message.startswith("Request too large")
    assert admit_one(project, estimated_tokens=1000).allowed  # nothing was counted


def test_all_or_nothing_a_refusal_counts_nowhere(gw_backend):
    project = project_state(project_limits=limits(tpm=100), token_limits={TOKEN: limits(rpm=10)})
    assert not admit_one(project, estimated_tokens=500).allowed
    assert not admit_one(project, estimated_tokens=500).allowed
    decision = admit_one(project, estimated_tokens=50)
    assert decision.allowed
    assert decision.headers["x-ratelimit-remaining-requests"] == "9"
    assert decision.headers["x-ratelimit-remaining-tokens"] == "50"


def test_limit_keys_expire_when_their_bucket_would_be_empty(gw_backend):
    project = project_state(token_limits={TOKEN: limits(rpm=60, tpd=86_400)})
    admit_one(project, estimated_tokens=10, now=None)
    client = sync_client()
    rpm_ttl = client.pttl(key("rl", "t", str(TOKEN), "rpm"))
    tpd_ttl = client.pttl(key("rl", "t", str(TOKEN), "tpd"))
    assert 0 < rpm_ttl <= 2000  # one request drains in 1 s, plus a second
    assert 9000 < tpd_ttl <= 11_000  # ten tokens at one a second


def test_redis_clock_is_used_when_no_time_is_given(gw_backend):
    project = project_state(token_limits={TOKEN: limits(rpm=2)})
    assert admit_one(project, now=None).allowed
    assert admit_one(project, now=None).allowed
    refused = admit_one(project, now=None)
    assert refused.reason == "rate_limit" and 0 < refused.retry_after_s <= 30


# ------------------------------------------------------------------------------ budgets


def test_a_hard_budget_reserves_the_max_cost_and_refuses_what_does_not_fit(gw_backend):
    budget = budget_state(amount=1000, spent=300)
    project = project_state(budgets=(budget,))
    first = admit_one(project, budgets=[budget], max_cost=400)
    assert first.allowed
    assert ledger_view(budget.budget_id, budget.period_start).used == 700
    refused = admit_one(project, budgets=[budget], max_cost=400)
    assert refused.reason == "budget"
    assert refused.retry_after_s == pytest.approx(budget.period_end - NOW, abs=1)
    assert "Hard budget #7 has no room for this request" in refused.message
    assert admit_one(project, budgets=[budget], max_cost=300).allowed  # exactly the amount


def test_settle_moves_the_reservation_to_the_real_cost(gw_backend):
    budget = budget_state(amount=1000)
    project = project_state(budgets=(budget,))
    first = admit_one(project, budgets=[budget], max_cost=600)
    assert not admit_one(project, budgets=[budget], max_cost=600).allowed
    assert settle_one(first, actual_tokens=10, actual_cost=150) == {7: 150}
    view = ledger_view(budget.budget_id, budget.period_start)
    assert (view.base, view.unbased, view.reserved) == (0, 150, 0)
    assert view.entries == {first.reservation.request_id: (str(int(budget.period_start)), 150, "p")}
    assert admit_one(project, budgets=[budget], max_cost=600).allowed
    # settling again (a retry of the caller's pipeline) counts nothing twice
    settle_one(first, actual_tokens=10, actual_cost=150)
    assert ledger_view(budget.budget_id, budget.period_start).used == 750


def test_a_used_up_budget_refuses_even_a_free_request(gw_backend):
    budget = budget_state(amount=5_000_000, spent=5_000_000)
    decision = admit_one(project_state(budgets=(budget,)), budgets=[budget], max_cost=0)
    assert decision.reason == "budget" and "is used up: $5.00 of $5.00 spent or reserved this period" in decision.message


def test_an_unpriced_request_under_a_hard_budget_is_refused(gw_backend):
    budget = budget_state(amount=10**9)
    decision = admit_one(project_state(budgets=(budget,)), budgets=[budget], max_cost=None)
    assert decision.reason == "budget" and "cannot be priced" in decision.message
    # without a covering hard budget an unpriced request is fine
    assert admit_one(project_state(), budgets=[], max_cost=None).allowed


def test_a_reservation_that_never_settles_is_given_back(gw_backend):
    budget = budget_state(amount=1000)
    project = project_state(budgets=(budget,))
    lost = admit_one(project, budgets=[budget], max_cost=1000)  # its gateway process dies
    assert not admit_one(project, budgets=[budget], max_cost=1, now=NOW + RESERVATION_TTL_S - 1).allowed
    assert admit_one(project, budgets=[budget], max_cost=1000, now=NOW + RESERVATION_TTL_S + 1).allowed
    # a late settle of the lost request still counts its spend, but gives back nothing twice
    settle_one(lost, actual_tokens=1, actual_cost=10)
    assert ledger_view(budget.budget_id, budget.period_start).used == 1010


def test_budget_and_limits_are_one_step(gw_backend):
    budget = budget_state(amount=1000)
    project = project_state(budgets=(budget,), token_limits={TOKEN: limits(rpm=10)})
    assert not admit_one(project, budgets=[budget], max_cost=2000).allowed
    decision = admit_one(project, budgets=[budget], max_cost=10)
    assert decision.headers["x-ratelimit-remaining-requests"] == "9"  # the refused request counted nowhere
    project = project_state(budgets=(budget,), token_limits={TOKEN: limits(rpm=1)})
    assert admit_one(project, budgets=[budget], max_cost=10).reason == "rate_limit"
    assert ledger_view(budget.budget_id, budget.period_start).reserved == 10  # only the admitted one


def test_ledger_keys_expire_after_the_period(gw_backend):
    budget = budget_state(amount=1000, length=3 * 86400)
    decision = admit_one(project_state(budgets=(budget,)), budgets=[budget], max_cost=5, now=None)
    settle_one(decision, actual_tokens=1, actual_cost=5)
    client = sync_client()
    ttl = client.pttl(admission.ledger_key(budget.budget_id, str(int(budget.period_start)))) / 1000
    expected = budget.period_end + admission.LEDGER_GRACE_S - time.time()
    assert expected - 60 < ttl <= expected + 1
    assert client.pttl(admission.entries_key(budget.budget_id)) / 1000 == pytest.approx(ttl, abs=60)


def test_a_state_built_before_its_period_ended_counts_in_the_next_period(gw_backend):
    budget = budget_state(amount=1000, spent=1000, start=NOW - 86400 - 60)  # ended a minute ago, used up
    decision = admit_one(project_state(budgets=(budget,)), budgets=[budget], max_cost=100)
    assert decision.allowed
    assert decision.reservation.budgets[0].period_tag == str(int(budget.period_end))
    assert ledger_view(budget.budget_id, budget.period_end).used == 100


def test_the_request_id_names_the_budget_entry(gw_backend):
    budget = budget_state(amount=1000)
    decision = admit_one(project_state(budgets=(budget,)), budgets=[budget], max_cost=5, request_id="req-1")
    assert decision.reservation.request_id == "req-1"
    settle_one(decision, actual_tokens=1, actual_cost=5)
    assert "req-1" in ledger_view(budget.budget_id, budget.period_start).entries
    with pytest.raises(ValueError, match="request_id"):
        run(lambda r: admit(r, project=project_state(budgets=(budget,)), token_id=TOKEN, estimated_tokens=1,
                            budgets=[budget], max_cost_micro_usd=5))


def test_settle_queues_on_a_sync_pipeline_too(gw_backend):
    budget = budget_state(amount=1000)
    decision = admit_one(project_state(budgets=(budget,)), budgets=[budget], max_cost=500)
    pipe = sync_client().pipeline(transaction=False)
    assert settle(decision, actual_tokens=3, actual_cost_micro_usd=120, pipeline=pipe) == {7: 120}
    pipe.execute()
    assert ledger_view(budget.budget_id, budget.period_start).used == 120


def test_a_flushed_script_cache_is_reloaded(gw_backend):
    project = project_state(token_limits={TOKEN: limits(rpm=5)})
    assert admit_one(project).allowed
    sync_client().script_flush()
    assert admit_one(project).headers["x-ratelimit-remaining-requests"] == "3"


# ------------------------------------------------------------------------------ covering, max cost


def test_covering_budgets_follow_token_model_and_tag_filters():
    everything = budget_state(1, amount=1)
    own_token = budget_state(2, amount=1, token_id=TOKEN)
    other_token = budget_state(3, amount=1, token_id=OTHER_TOKEN)
    one_model = budget_state(4, amount=1, model="gpt-4o")
    other_model = budget_state(5, amount=1, model="claude-sonnet-4")
    search = budget_state(6, amount=1, tag_key="feature", tag_value="search")
    project = project_state(budgets=(everything, own_token, other_token, one_model, other_model, search))
    covering = covering_budgets(project, token_id=TOKEN, models=["gpt-4o", "gpt-4o-mini"], tags={"feature": "search"})
    assert [b.budget_id for b in covering] == [1, 2, 4, 6]
    covering = covering_budgets(project, token_id=OTHER_TOKEN, models=["llama"], tags={"feature": "chat"})
    assert [b.budget_id for b in covering] == [1, 3]


def upstream(model: str, input_price: int | None, output_price: int | None) -> UpstreamState:
    return UpstreamState(
        connection_id=1, connection_name="sim", kind="openai", provider="openai", base_url="http://sim",
        api_key="", allow_private=True, model=model, weight=1, input_micro_per_mtok=input_price,
        output_micro_per_mtok=output_price, cached_micro_per_mtok=None, benchmark_ttft_p50_ms=None,
    )


def test_max_cost_is_the_most_expensive_upstream_rounded_up():
    cheap, dear = upstream("a", 150_000, 600_000), upstream("b", 2_500_000, 10_000_000)
    # 1000 prompt tokens at $2.50/M + 500 output at $10/M = $0.0075 = 7500 micro-USD
    assert max_cost_micro_usd([cheap, dear], prompt_tokens=1000, max_output_tokens=500) == 7500
    assert max_cost_micro_usd([cheap], prompt_tokens=1, max_output_tokens=0) == 1  # 0.15 rounds up
    assert max_cost_micro_usd([cheap, upstream("c", None, 1)], prompt_tokens=1, max_output_tokens=1) is None


# ------------------------------------------------------------------------------ formats


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (0.0004, "1ms"), (0.02, "20ms"), (0.999, "999ms"), (1, "1s"), (59.972, "59.972s"),
    (6.5, "6.5s"), (60, "1m0s"), (360, "6m0s"), (179.56, "2m59.56s"), (3723.5, "1h2m3.5s"), (86400, "24h0m0s"),
])
def test_openai_duration_format(seconds, text):
    assert openai_duration(seconds) == text
