import pytest

from auto_collector.exchange import _split_timeout


def test_http_timeouts_add_up_to_the_bound_given() -> None:
    for total in (0.3, 1.0, 2.5, 10.0, 60.0):
        connect, read = _split_timeout(total)
        assert 0 < connect <= 3.0 and read > 0
        assert connect + read == pytest.approx(total)
