"""The model-service: serves Predict over gRPC on 127.0.0.1:$PORT (recon tells each replica its PORT)."""

from __future__ import annotations

import os
from concurrent import futures

import grpc
import model
from interface import load

pb, pb_grpc = load()
VERSION = os.environ.get("MODEL_VERSION", "dev")


class Predictor(pb_grpc.PredictorServicer):  # type: ignore[misc,name-defined]
    def __init__(self) -> None:
        self.weights = model.load()

    def Predict(self, request, context):  # type: ignore[no-untyped-def]
        return pb.PredictReply(prediction=model.predict(self.weights, dict(request.features)),
                               model_version=VERSION)


def serve(port: int) -> grpc.Server:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pb_grpc.add_PredictorServicer_to_server(Predictor(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server


if __name__ == "__main__":
    serve(int(os.environ.get("PORT", "19000"))).wait_for_termination()
