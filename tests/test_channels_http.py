"""Helpdesk API calls are classified by what the helpdesk may have done: not acted, maybe acted, refused."""

from __future__ import annotations

import socket
import threading

import pytest

from server.channels.http import NotDelivered, Rejected, Uncertain, call
from tests.helpdesk_fakes import FakeChatwoot

PATH = "/api/v1/accounts/1/conversations/5/messages"


@pytest.fixture
def fake():
    with FakeChatwoot("tok") as server:
        yield server


def post(fake, timeout: float = 2.0, token: str = "tok"):
    return call(
        "POST", fake.url + PATH, body={"content": "hi"}, timeout=timeout, headers={"api_access_token": token}
    )


def test_a_2xx_answer_is_returned_decoded(fake):
    answer = post(fake)
    assert answer["content"] == "hi" and isinstance(answer["id"], int)
    assert fake.calls(PATH)[0].body == {"content": "hi"}


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_429_and_5xx_mean_not_acted_on(fake, status):
    fake.fault("/messages", status=status)
    with pytest.raises(NotDelivered) as info:
        post(fake)
    assert info.value.status == status


def test_a_4xx_is_a_refusal(fake):
    with pytest.raises(Rejected) as info:
        post(fake, token="wrong")
    assert info.value.status == 401


def test_connection_refused_means_not_sent():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once closed
    with pytest.raises(NotDelivered, match="cannot connect"):
        call("POST", f"http://127.0.0.1:{port}{PATH}", body={}, timeout=1.0)


def test_connection_dropped_after_sending_is_uncertain(fake):
    fake.fault("/messages", drop=True)
    with pytest.raises(Uncertain):
        post(fake)
    assert len(fake.calls(PATH)) == 1  # the helpdesk did receive it


def test_no_answer_in_time_is_uncertain(fake):
    release = threading.Event()
    fake.fault("/messages", hold=release, hold_max=5)
    with pytest.raises(Uncertain, match="no answer within 0.3 s"):
        post(fake, timeout=0.3)
    release.set()
