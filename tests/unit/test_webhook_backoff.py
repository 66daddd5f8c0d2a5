"""The webhook retry schedule the README states: 10 s doubling up to 4 hours, given up after a
day of failures, 17 attempts."""

from db.webhook_deliveries import retry_delay_s


def test_the_default_schedule_doubles_to_four_hours_and_gives_up_after_a_day():
    assert [retry_delay_s(n, 10) for n in range(1, 13)] == [
        10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5120, 10240, 14400]
    assert retry_delay_s(40, 10) == 4 * 3600
    at, attempts = 0.0, 1  # as record_attempt decides: retry while failing for less than a day
    while at < 86400:
        at += retry_delay_s(attempts, 10)
        attempts += 1
    assert attempts == 17 and 86400 <= at < 86400 + 4 * 3600
