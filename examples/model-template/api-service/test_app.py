"""Tests of the api-service against a stand-in model-service (run: python -m pytest api-service)."""

from __future__ import annotations

import os
import socket
from concurrent import futures

import grpc
from interface import load

pb, pb_grpc = load()


class FakePredictor(pb_grpc.PredictorServicer):  # type: ignore[misc,name-defined]
    def Predict(self, request, context):  # type: ignore[no-untyped-def]
        return pb.PredictReply(prediction=sum(request.features.values()), model_version="fake")


def test_rest_request_reaches_the_model_service() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_PredictorServicer_to_server(FakePredictor(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    os.environ["MODEL_SERVICE_ADDR"] = f"127.0.0.1:{port}"
    try:
        import app
        from fastapi.testclient import TestClient

        client = TestClient(app.app)
        got = client.post("/predict", json={"features": {"a": 1.5, "b": 2}})
        assert got.status_code == 200 and got.json() == {"prediction": 3.5, "model_version": "fake"}
        assert client.post("/predict", json={"features": {"a": "x"}}).status_code == 422
    finally:
        server.stop(None)
