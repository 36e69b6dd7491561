"""Tests of the api-service against a stand-in model-service (run: python -m pytest api-service)."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from interface import load

pb, pb_grpc = load()
KEY = "test-key-predict-0123456789"
METRICS_KEY = "test-key-metrics-0123456789"


class FakePredictor(pb_grpc.PredictorServicer):  # type: ignore[misc,name-defined]
    def Predict(self, request, context):  # type: ignore[no-untyped-def]
        return pb.PredictReply(prediction=sum(request.features.values()), model_version="fake")


@pytest.fixture(scope="module")
def app() -> Iterator[object]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_PredictorServicer_to_server(FakePredictor(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    os.environ.update({"MODEL_SERVICE_ADDR": f"127.0.0.1:{port}", "API_KEY_CI": KEY,
                       "API_KEY_GRAFANA": METRICS_KEY, "API_KEY_GRAFANA_SCOPES": "metrics",
                       "RATE_LIMIT_PER_KEY": "600/minute", "MAX_REQUEST_BYTES": "1000"})
    try:
        import app as module

        yield module
    finally:
        server.stop(None)


def _client(module: object, **settings: str):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient
    from guard import Guard, Settings

    lines: list[str] = []
    env = {**os.environ, **settings}
    guard = Guard(module.api, Settings.from_env(env), log=lines.append)  # type: ignore[attr-defined]
    return TestClient(guard), lines


def test_rest_request_reaches_the_model_service(app: object) -> None:
    client, _ = _client(app)
    got = client.post("/predict", json={"features": {"a": 1.5, "b": 2}}, headers={"X-API-Key": KEY})
    assert got.status_code == 200 and got.json() == {"prediction": 3.5, "model_version": "fake"}
    assert got.headers["x-request-id"]
    bad = client.post("/predict", json={"features": {"a": "x"}}, headers={"Authorization": f"Bearer {KEY}"})
    assert bad.status_code == 422


def test_keys_and_scopes(app: object) -> None:
    client, lines = _client(app)
    assert client.post("/predict", json={"features": {}}).status_code == 401
    assert client.post("/predict", json={"features": {}}, headers={"X-API-Key": KEY + "x"}).status_code == 401
    assert client.post("/predict", json={"features": {}}, headers={"X-API-Key": METRICS_KEY}).status_code == 403
    assert client.get("/metrics", headers={"X-API-Key": KEY}).status_code == 403
    assert client.get("/health").status_code in (200, 503)  # open: health checks carry no key
    metrics = client.get("/metrics", headers={"X-API-Key": METRICS_KEY})
    assert metrics.status_code == 200 and 'api_requests_total{method="POST",path="/predict",status="401"} 2' \
        in metrics.text and "api_request_duration_seconds_bucket" in metrics.text
    logged = [json.loads(line) for line in lines]
    assert {e["status"] for e in logged} >= {401, 403, 200} and {e["key"] for e in logged} >= {None, "grafana"}
    assert not any(KEY in line or METRICS_KEY in line for line in lines)  # keys never logged


def test_rate_limits_answer_429_with_retry_after(app: object) -> None:
    client, _ = _client(app, RATE_LIMIT_PER_KEY="3/minute")
    codes = [client.post("/predict", json={"features": {}}, headers={"X-API-Key": KEY}).status_code
             for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = client.post("/predict", json={"features": {}}, headers={"X-API-Key": KEY})
    assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 20
    by_ip, _ = _client(app, RATE_LIMIT_PER_IP="2/minute")
    codes = [by_ip.post("/predict", json={"features": {}}).status_code for _ in range(3)]
    assert codes == [401, 401, 429]  # guessing keys from one address is limited too
    assert by_ip.get("/health").status_code != 429
    # behind a trusted proxy (recon's endpoint), the address it forwards is the client's; from others it is not
    proxied, _ = _client(app, RATE_LIMIT_PER_IP="2/minute", TRUSTED_PROXIES="testclient")
    for address in ("10.0.0.1", "10.0.0.2"):
        codes = [proxied.post("/predict", json={"features": {}}, headers={"X-Forwarded-For": address}).status_code
                 for _ in range(3)]
        assert codes == [401, 401, 429], address
    spoofed, _ = _client(app, RATE_LIMIT_PER_IP="2/minute")
    codes = [spoofed.post("/predict", json={"features": {}}, headers={"X-Forwarded-For": f"10.0.1.{n}"}).status_code
             for n in range(3)]
    assert codes == [401, 401, 429]


def test_request_size_is_limited(app: object) -> None:
    client, _ = _client(app)
    big = {"features": {f"f{i}": 1.0 for i in range(200)}}
    assert client.post("/predict", json=big, headers={"X-API-Key": KEY}).status_code == 413


def test_bad_settings_are_named() -> None:
    from guard import SettingError, Settings

    for env, named in (({"API_KEY_X": "short"}, "API_KEY_X"),
                       ({"API_KEY_X": KEY, "API_KEY_X_SCOPES": "admin"}, "API_KEY_X_SCOPES"),
                       ({"RATE_LIMIT_PER_KEY": "lots"}, "RATE_LIMIT_PER_KEY"),
                       ({"MAX_REQUEST_BYTES": "-1"}, "MAX_REQUEST_BYTES")):
        with pytest.raises(SettingError, match=named):
            Settings.from_env(env)
