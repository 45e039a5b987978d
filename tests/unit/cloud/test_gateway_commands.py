"""The gateway and the routes that wait for a charger (a service's ``command_paths``): the service's 504
(the charger did not answer) is passed on with its problem and never opens the service's breaker."""

from __future__ import annotations

import httpx

from tests.unit.cloud.test_gateway import DRIVER, Upstream, scripted


def no_answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(504, json={"title": "No answer from the charger", "status": 504, "code": "no_answer",
                                     "detail": "charger 'CP-1' of site 's1' did not answer within 20 s"},
                          headers={"content-type": "application/problem+json"})


async def test_a_chargers_silence_is_passed_on_and_does_not_open_the_breaker() -> None:
    service = Upstream()
    service.answer = no_answer
    async for client in scripted(upstream=service):
        answers = [await client.post("/charging/start", headers=DRIVER, json={}) for _ in range(7)]
        assert [a.status_code for a in answers] == [504] * 7
        assert len(service.seen) == 7, "the breaker stayed closed"
        assert {a.json()["code"] for a in answers} == {"no_answer"}
        assert "did not answer within 20 s" in answers[0].json()["detail"]
        unlock = await client.post("/charging/stations/s1/CP-1/unlock", headers=DRIVER, json={})
        assert (unlock.status_code, unlock.json()["code"]) == (504, "no_answer")


async def test_a_504_elsewhere_is_still_the_gateways_own_problem() -> None:
    service = Upstream()
    service.answer = no_answer
    async for client in scripted(upstream=service):
        answer = await client.get("/charging/history/v1", headers=DRIVER)
        assert answer.status_code == 504
        assert "code" not in answer.json() and "failed to answer" in answer.json()["detail"]
