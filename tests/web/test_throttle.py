"""The credential throttle over time, on a clock the test turns (the end-to-end tests use real HTTP)."""

from __future__ import annotations

import pytest

from flowbot.errors import TooManyAttempts
from flowbot.web.throttle import CredentialThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def throttle(clock: Clock, **limits) -> CredentialThrottle:
    return CredentialThrottle("passwords", per_address=(5, 60.0), per_account=(20, 600.0), clock=clock, **limits)


def guess(throttle: CredentialThrottle, address: str, account: str = "alice") -> None:
    throttle.begin(address, account)
    throttle.failed(address, account)


def test_an_address_is_held_off_for_the_rest_of_the_minute_after_five_wrong(clock):
    passwords = throttle(clock)
    for _ in range(5):
        guess(passwords, "10.0.0.1")
        clock.now += 1
    with pytest.raises(TooManyAttempts, match="for 'alice' from this address: try again in 55 s") as refused:
        passwords.begin("10.0.0.1", "alice")
    assert refused.value.retry_after == 55
    passwords.begin("10.0.0.1", "bob")  # another account from there is not held off

    clock.now += 55
    passwords.begin("10.0.0.1", "alice")


def test_an_account_guessed_from_many_addresses_is_closed_to_new_ones_for_the_window_only(clock):
    # Given alice used from her address, and twenty wrong guesses from twenty others over ten minutes
    passwords = throttle(clock)
    passwords.succeeded("10.0.0.1", "alice", passwords.begin("10.0.0.1", "alice"))
    for n in range(20):
        guess(passwords, f"10.1.0.{n}")
        clock.now += 29

    # Then a new address is refused, its attempt never counted; hers is not; nor other accounts
    with pytest.raises(TooManyAttempts, match="lately, from many addresses") as refused:
        passwords.begin("10.2.0.1", "alice")
    assert refused.value.retry_after == 600 - 20 * 29
    passwords.succeeded("10.0.0.1", "alice", passwords.begin("10.0.0.1", "alice"))
    passwords.begin("10.2.0.1", "bob")

    # And once the oldest guess is ten minutes old, new addresses may try again
    clock.now += 600 - 20 * 29
    passwords.begin("10.2.0.1", "alice")


def test_guesses_sent_all_at_once_are_held_to_the_account_limit(clock):
    # Given thirty guesses that all begin before any is answered
    passwords = throttle(clock)
    began = 0
    with pytest.raises(TooManyAttempts):
        for n in range(30):
            passwords.begin(f"10.1.0.{n}", "alice")
            began += 1
    # Then only twenty were let through to be checked
    assert began == 20


def test_a_right_attempt_counts_against_nothing(clock):
    passwords = throttle(clock)
    for _ in range(4):
        guess(passwords, "10.0.0.1")
    for _ in range(50):  # many right ones, some at once
        first, second = passwords.begin("10.0.0.1", "alice"), passwords.begin("10.0.0.1", "alice")
        passwords.succeeded("10.0.0.1", "alice", first)
        passwords.succeeded("10.0.0.1", "alice", second)
    for _ in range(4):
        guess(passwords, "10.0.0.1")
    # Then neither the address nor the account is held off: eight wrong attempts in all, never five in a row
    assert passwords.begin("10.0.0.1", "alice") == clock.now
    assert passwords.begin("10.9.0.1", "alice") == clock.now


def test_an_address_is_known_for_a_month(clock):
    passwords = throttle(clock, known_for=30 * 86400.0)
    passwords.succeeded("10.0.0.1", "alice", passwords.begin("10.0.0.1", "alice"))
    clock.now += 31 * 86400
    for n in range(20):
        guess(passwords, f"10.1.0.{n}")
    with pytest.raises(TooManyAttempts):
        passwords.begin("10.0.0.1", "alice")


def test_memory_stays_bounded_however_many_addresses_and_names_are_tried(clock):
    passwords = CredentialThrottle("passwords", max_keys=100, clock=clock)
    for n in range(5000):
        guess(passwords, f"10.{n // 256}.{n % 256}.1", f"user{n}")
        passwords.succeeded(f"10.{n // 256}.{n % 256}.2", f"user{n}", passwords.begin("x", f"user{n}"))
    assert len(passwords._by_address._times) <= 100
    assert len(passwords._by_account._times) <= 100
    assert len(passwords._known) <= 100
