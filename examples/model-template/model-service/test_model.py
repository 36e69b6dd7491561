"""Tests of the model and of the gRPC service around it (run: python -m pytest model-service)."""

from __future__ import annotations

import socket

import grpc
import model
from interface import load
from server import serve


def test_predictions_are_probabilities() -> None:
    weights = model.load()
    low = model.predict(weights, {"tenure_months": 60, "support_calls": 0})
    high = model.predict(weights, {"tenure_months": 1, "support_calls": 9})
    assert 0 < low < high < 1


def test_predict_over_grpc() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = serve(port)
    try:
        pb, pb_grpc = load()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = pb_grpc.PredictorStub(channel).Predict(pb.PredictRequest(features={"support_calls": 3}))
        assert 0 < reply.prediction < 1
    finally:
        server.stop(None)
