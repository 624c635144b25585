import pytest
import requests

from auto_collector.exchange import _split_timeout


def test_http_timeouts_add_up_to_the_bound_given() -> None:
    for total in (0.3, 1.0, 2.5, 10.0, 60.0):
        connect, read = _split_timeout(total)
        assert 0 < connect <= 3.0 and read > 0
        assert connect + read == pytest.approx(total)


def _response(status: int, body: bytes, headers: dict[str, str]) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body
    response.headers.update(headers)
    return response


def test_numbers_no_exchange_sends_are_ignored_rather_than_stored() -> None:
    """A 60-digit code or a 40-digit Retry-After would break the outcome record (DynamoDB holds 38 digits) or block
    the deployment for centuries: they are read as absent."""
    from auto_collector.exchange import classify

    huge = b'{"code": 1' + b"0" * 60 + b', "msg": "garbled"}'
    result = classify(_response(429, huge, {"Retry-After": "9" * 40, "X-SAPI-USED-IP-WEIGHT-1M": "1" + "0" * 30}), 5)
    assert (result.verdict, result.code, result.retry_after_s, result.used_weight_1m) == (
        "rate_limited",
        None,
        None,
        None,
    )
    sane = classify(_response(429, b'{"code": -1003, "msg": "x"}', {"Retry-After": "30"}), 5)
    assert (sane.code, sane.retry_after_s) == (-1003, 30)
