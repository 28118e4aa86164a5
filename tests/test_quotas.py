"""Tests for sdxl_breeder.web.quotas: the buckets and counters behind the server's per-client limits."""

from __future__ import annotations

import pytest

from sdxl_breeder.protocol import ErrorCode, ProtocolError
from sdxl_breeder.web.quotas import Admit, ClientQuotas, GenomeQuota, MessageRate, SessionSlots, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_bursts_then_refills_at_its_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(10, 5, clock)
    assert [bucket.take() for _ in range(6)] == [True] * 5 + [False]
    clock.now += 0.25  # 2.5 tokens
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    clock.now += 100
    assert bucket.full() and sum(bucket.take() for _ in range(10)) == 5  # never more than the burst
    with pytest.raises(ValueError):
        TokenBucket(0, 5)


def test_message_rate_drops_with_one_error_then_closes_a_lasting_flood() -> None:
    clock = Clock()
    rate = MessageRate(100, max_over_s=5.0, clock=clock)
    assert all(rate.admit() is Admit.OK for _ in range(100))  # a second's worth of burst
    assert rate.admit() is Admit.WARN  # the first drop of an episode: one error
    assert [rate.admit() for _ in range(50)] == [Admit.DROP] * 50  # the rest: silence
    for _ in range(48):  # the flood goes on at twice the rate: half admitted, half dropped
        clock.now += 0.1
        verdicts = [rate.admit() for _ in range(20)]
        assert verdicts.count(Admit.OK) == 10 and Admit.WARN not in verdicts and Admit.CLOSE not in verdicts
    clock.now += 0.5  # 5 s since the first drop
    assert [rate.admit() for _ in range(51)][-1] is Admit.CLOSE
    assert rate.dropped > 500 and rate.pause_s == 0.01


def test_message_rate_episode_ends_after_a_quiet_second() -> None:
    clock = Clock()
    rate = MessageRate(10, max_over_s=5.0, clock=clock)
    for episode in range(8):  # bursts 2 s apart never add up to a 5 s flood
        verdicts = [rate.admit() for _ in range(30)]
        assert verdicts.count(Admit.WARN) == 1 and Admit.CLOSE not in verdicts
        clock.now += 2.0


def test_genome_quota_counts_only_what_was_stored() -> None:
    clock = Clock()
    quota = GenomeQuota(3, clock)
    for _ in range(10):
        quota.check()  # checking (a refused or failed request) costs nothing
    for _ in range(3):
        quota.check()
        quota.spend()
    with pytest.raises(ProtocolError) as info:
        quota.check()
    assert info.value.code is ErrorCode.RATE_LIMITED and "max_genomes_per_minute" in info.value.message
    clock.now += 20  # a minute of 3 refills one every 20 s
    quota.check()


def test_client_quotas_are_per_address() -> None:
    clock = Clock()
    quotas = ClientQuotas(1, clock)
    quotas.get("10.0.0.1").spend()
    with pytest.raises(ProtocolError):
        quotas.get("10.0.0.1").check()
    quotas.get("10.0.0.2").check()
    assert quotas.get("10.0.0.1") is quotas.get("10.0.0.1")


def test_session_slots() -> None:
    slots = SessionSlots(2)
    assert slots.try_open() and slots.try_open() and not slots.try_open()
    assert "max_sessions" in slots.refusal() and len(slots.refusal().encode()) <= 123  # a close reason's limit
    slots.close()
    assert slots.try_open()
