"""The key lifecycle's timing and decisions (``server.keys.lifecycle``), without a database.

next --(staging delay)--> active --(rotation)--> retired --(hold)--> removed
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings as hypothesis_settings, strategies as st

from server.keys.lifecycle import Step, activates_at, hold, plan, published_until, staging_delay
from server.settings import Settings
from server.storage.keys import StoredKey

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
DAY = timedelta(days=1)
ALGS = ("RS256", "PS256", "ES256", "Ed25519")

# max-age 600 s, polls every 5 s: staging delay 610 s; tokens live at most 3600 s: hold 3610 s.
SETTINGS = Settings(jwks_max_age=600, keys_poll_interval=5, access_token_ttl=900, id_token_ttl=3600)
ROTATING = replace(SETTINGS, keys_rotate_every=7 * 86400)


def make_key(
    kid: str,
    state: str,
    *,
    alg: str = "RS256",
    created_at: datetime = T0,
    activated_at: datetime | None = None,
    retired_at: datetime | None = None,
    removed_at: datetime | None = None,
) -> StoredKey:
    """A key row as the lifecycle sees it; the key material plays no part in the timing."""
    return StoredKey(
        kid=kid,
        alg=alg,
        state=state,
        public_jwk={},
        private_key_enc=b"",
        wrapping_key_id="w",
        created_at=created_at,
        activated_at=activated_at,
        retired_at=retired_at,
        removed_at=removed_at,
    )


def active_key(kid: str = "active", *, alg: str = "RS256", since: datetime = T0) -> StoredKey:
    return make_key(kid, "active", alg=alg, created_at=since, activated_at=since)


def next_key(kid: str = "next", *, alg: str = "RS256", created_at: datetime = T0) -> StoredKey:
    return make_key(kid, "next", alg=alg, created_at=created_at)


def retired_key(kid: str = "retired", *, alg: str = "RS256", retired_at: datetime = T0) -> StoredKey:
    return make_key(
        kid, "retired", alg=alg, created_at=retired_at - DAY, activated_at=retired_at - DAY, retired_at=retired_at
    )


# Durations.


def test_the_staging_delay_is_the_jwks_max_age_plus_two_poll_intervals() -> None:
    assert staging_delay(SETTINGS) == timedelta(seconds=610)
    assert staging_delay(Settings(jwks_max_age=3600, keys_poll_interval=30)) == timedelta(seconds=3660)
    assert staging_delay(Settings(jwks_max_age=0, keys_poll_interval=7)) == timedelta(seconds=14)


def test_the_hold_is_the_longest_token_lifetime_plus_two_poll_intervals() -> None:
    assert hold(SETTINGS) == timedelta(seconds=3600 + 10)
    longer_access_tokens = replace(SETTINGS, access_token_ttl=7200, id_token_ttl=300)
    assert hold(longer_access_tokens) == timedelta(seconds=7200 + 10)


def test_a_next_key_activates_one_staging_delay_after_it_was_created() -> None:
    assert activates_at(next_key(created_at=T0), SETTINGS) == T0 + timedelta(seconds=610)


# Activation.


def test_a_next_key_does_not_activate_one_second_before_its_time() -> None:
    staged = next_key(created_at=T0 + DAY)
    keys = [active_key(since=T0), staged]

    assert plan(keys, activates_at(staged, SETTINGS) - SECOND, SETTINGS) == []


def test_a_next_key_activates_at_its_activation_time() -> None:
    staged = next_key(created_at=T0 + DAY)
    keys = [active_key(since=T0), staged]

    assert plan(keys, activates_at(staged, SETTINGS), SETTINGS) == [Step("activate", "RS256", "next")]


def test_a_next_key_activates_for_an_algorithm_that_has_no_active_key_yet() -> None:
    staged = next_key(alg="ES256", created_at=T0)

    assert plan([staged], activates_at(staged, SETTINGS), SETTINGS) == [Step("activate", "ES256", "next")]


def test_of_several_next_keys_the_oldest_activates_first() -> None:
    newer = next_key("newer", created_at=T0 + 10 * SECOND)
    older = next_key("older", created_at=T0)
    keys = [active_key(since=T0 - DAY), newer, older]  # not in creation order

    steps = plan(keys, T0 + DAY, SETTINGS)

    assert steps == [Step("activate", "RS256", "older")]


def test_of_several_next_keys_none_activates_while_the_oldest_is_not_due() -> None:
    older = next_key("older", created_at=T0)
    keys = [active_key(since=T0 - DAY), next_key("newer", created_at=T0 + SECOND), older]

    assert plan(keys, activates_at(older, SETTINGS) - SECOND, SETTINGS) == []


# Automatic rotation.


def test_with_a_rotation_period_a_next_key_is_staged_one_staging_delay_before_the_active_key_is_due() -> None:
    keys = [active_key(since=T0)]
    due = T0 + timedelta(seconds=ROTATING.keys_rotate_every) - staging_delay(ROTATING)

    assert plan(keys, due - SECOND, ROTATING) == []
    assert plan(keys, due, ROTATING) == [Step("stage", "RS256")]
    assert plan(keys, due + DAY, ROTATING) == [Step("stage", "RS256")]


def test_the_staged_key_of_a_rotation_starts_signing_when_the_active_key_reaches_the_period() -> None:
    due = T0 + timedelta(seconds=ROTATING.keys_rotate_every) - staging_delay(ROTATING)
    staged = next_key(created_at=due)

    assert activates_at(staged, ROTATING) == T0 + timedelta(seconds=ROTATING.keys_rotate_every)


def test_the_rotation_period_counts_from_activation_not_from_creation() -> None:
    key = make_key("active", "active", created_at=T0 - 30 * DAY, activated_at=T0)
    due = T0 + timedelta(seconds=ROTATING.keys_rotate_every) - staging_delay(ROTATING)

    assert plan([key], due - SECOND, ROTATING) == []
    assert plan([key], due, ROTATING) == [Step("stage", "RS256")]


def test_no_key_is_staged_while_a_next_key_exists() -> None:
    long_overdue = T0 + 365 * DAY
    staged = next_key(created_at=long_overdue)  # staged just now: not due yet
    keys = [active_key(since=T0), staged]

    assert plan(keys, long_overdue, ROTATING) == []
    assert plan(keys, activates_at(staged, ROTATING), ROTATING) == [Step("activate", "RS256", "next")]


def test_without_a_rotation_period_no_key_is_ever_staged() -> None:
    assert SETTINGS.keys_rotate_every == 0
    keys = [active_key(since=T0)]

    for later in (T0, T0 + DAY, T0 + 3650 * DAY):
        assert plan(keys, later, SETTINGS) == []


def test_an_algorithm_without_an_active_key_is_not_rotated() -> None:
    keys = [retired_key(retired_at=T0)]

    assert [s for s in plan(keys, T0 + 3650 * DAY, ROTATING) if s.action == "stage"] == []


# Retirement and removal.


def test_a_retired_key_is_not_removed_one_second_before_the_hold_ends() -> None:
    keys = [active_key(since=T0), retired_key(retired_at=T0)]

    assert plan(keys, T0 + hold(SETTINGS) - SECOND, SETTINGS) == []


def test_a_retired_key_is_removed_when_the_hold_ends() -> None:
    keys = [active_key(since=T0), retired_key(retired_at=T0)]

    assert plan(keys, T0 + hold(SETTINGS), SETTINGS) == [Step("remove", "RS256", "retired")]


def test_published_until_for_each_state() -> None:
    removed = make_key("removed", "removed", created_at=T0 - DAY, removed_at=T0)

    assert published_until(next_key(), SETTINGS) is None
    assert published_until(active_key(), SETTINGS) is None
    assert published_until(retired_key(retired_at=T0), SETTINGS) == T0 + hold(SETTINGS)
    assert published_until(removed, SETTINGS) == T0


def test_plan_never_removes_an_active_or_a_next_key() -> None:
    ancient = T0 - 3650 * DAY
    keys = [
        active_key(since=ancient),
        next_key(alg="ES256", created_at=T0),
        make_key("removed", "removed", created_at=ancient, removed_at=ancient),
    ]

    steps = plan(keys, T0 + SECOND, SETTINGS)

    assert [s for s in steps if s.action == "remove"] == []


# Several algorithms.


def test_keys_of_different_algorithms_are_planned_independently() -> None:
    rs_next = next_key("rs-next", alg="RS256", created_at=T0)
    es_next = next_key("es-next", alg="ES256", created_at=T0 + DAY)  # not due yet
    keys = [
        active_key("rs-active", alg="RS256", since=T0 - 30 * DAY),
        rs_next,
        active_key("es-active", alg="ES256", since=T0 - 30 * DAY),
        es_next,
        active_key("ed-active", alg="Ed25519", since=T0 - 30 * DAY),
        retired_key("ed-retired", alg="Ed25519", retired_at=T0 - DAY),
    ]
    now = activates_at(rs_next, ROTATING)

    steps = plan(keys, now, ROTATING)

    # RS256 activates its due key, ES256 waits for its own (and so stages nothing), EdDSA
    # is overdue for rotation and its retired key's hold is over.
    assert sorted(steps, key=repr) == sorted(
        [
            Step("activate", "RS256", "rs-next"),
            Step("stage", "Ed25519"),
            Step("remove", "Ed25519", "ed-retired"),
        ],
        key=repr,
    )


def test_a_due_key_of_one_algorithm_does_not_activate_a_key_of_another() -> None:
    es_next = next_key("es-next", alg="ES256", created_at=T0)
    keys = [active_key("rs-active", since=T0 - DAY), es_next, next_key("rs-next", created_at=T0 + DAY)]

    assert plan(keys, activates_at(es_next, SETTINGS), SETTINGS) == [Step("activate", "ES256", "es-next")]


# Properties over arbitrary key sets.

OFFSETS = st.integers(min_value=0, max_value=60 * 86400)


def _at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


@st.composite
def key_sets(draw: st.DrawFn) -> list[StoredKey]:
    """Any key set the database can hold: at most one active key per algorithm."""
    keys: list[StoredKey] = []
    for alg in draw(st.lists(st.sampled_from(ALGS), unique=True, min_size=1)):
        if draw(st.booleans()):
            created = draw(OFFSETS)
            activated = created + draw(st.integers(min_value=0, max_value=86400))
            keys.append(
                make_key(f"{alg}-active", "active", alg=alg, created_at=_at(created), activated_at=_at(activated))
            )
        for index in range(draw(st.integers(min_value=0, max_value=4))):
            kid = f"{alg}-{index}"
            created = draw(OFFSETS)
            state = draw(st.sampled_from(("next", "retired", "removed")))
            if state == "next":
                keys.append(make_key(kid, "next", alg=alg, created_at=_at(created)))
            else:
                ended = _at(created + draw(OFFSETS))
                keys.append(
                    make_key(
                        kid,
                        state,
                        alg=alg,
                        created_at=_at(created),
                        activated_at=_at(created),
                        retired_at=ended,
                        removed_at=ended if state == "removed" else None,
                    )
                )
    return draw(st.permutations(keys))


lifecycle_settings = st.builds(
    Settings,
    jwks_max_age=st.integers(min_value=0, max_value=86400),
    keys_poll_interval=st.integers(min_value=1, max_value=300),
    access_token_ttl=st.integers(min_value=5, max_value=86400),
    id_token_ttl=st.integers(min_value=5, max_value=86400),
    keys_rotate_every=st.one_of(st.just(0), st.integers(min_value=3600, max_value=30 * 86400)),
)


@hypothesis_settings(max_examples=400, deadline=None)
@given(keys=key_sets(), seconds=st.integers(min_value=0, max_value=150 * 86400), config=lifecycle_settings)
def test_plan_respects_the_lifecycle_for_any_key_set(keys: list[StoredKey], seconds: int, config: Settings) -> None:
    now = _at(seconds)
    by_kid = {key.kid: key for key in keys}

    steps = plan(keys, now, config)

    activations = [s for s in steps if s.action == "activate"]
    for step in activations:
        key = by_kid[step.kid or ""]
        assert key.state == "next" and key.alg == step.alg
        assert activates_at(key, config) <= now, "a key activated before every cache has seen it"
    assert len({s.alg for s in activations}) == len(activations), "two activations for one algorithm"
    for step in steps:
        if step.action == "remove":
            key = by_kid[step.kid or ""]
            assert key.state == "retired" and key.alg == step.alg
            until = published_until(key, config)
            assert until is not None and until <= now, "a key removed before the tokens it signed expired"
        elif step.action == "stage":
            group = [k for k in keys if k.alg == step.alg]
            assert config.keys_rotate_every > 0
            assert not any(k.state == "next" for k in group)
            assert any(k.state == "active" for k in group)
        else:
            assert step.action == "activate"
    assert len(steps) == len(set(steps))
