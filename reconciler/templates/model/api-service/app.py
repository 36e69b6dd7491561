"""The api-service: REST JSON in front of the model-service's gRPC Predict.

POST /predict {"features": {"tenure_months": 3, "support_calls": 4}} -> {"prediction": 0.71, "model_version": "1"}
     with a key: X-API-Key: <key> (or Authorization: Bearer <key>)
GET /health -> {"status": "ok"} once the model-service answers (no key).
GET /metrics -> Prometheus metrics (a key with the metrics scope).
Keys, rate limits, size and time limits: guard.py.
"""

from __future__ import annotations

import os
import sys

import grpc
from fastapi import FastAPI, HTTPException
from guard import Guard, SettingError, Settings, forget_keys
from interface import load
from pydantic import BaseModel, Field

pb, pb_grpc = load()
MODEL_SERVICE = os.environ.get("MODEL_SERVICE_ADDR", "127.0.0.1:19000")
try:
    SETTINGS = Settings.from_env()
except SettingError as exc:
    sys.exit(f"api-service: {exc}")
api = FastAPI(title="{{name}} api-service")
_channel = grpc.insecure_channel(MODEL_SERVICE)
_stub = pb_grpc.PredictorStub(_channel)


class PredictIn(BaseModel):
    features: dict[str, float] = Field(description="Named numeric features.")


class PredictOut(BaseModel):
    prediction: float
    model_version: str


@api.post("/predict")
def predict(body: PredictIn) -> PredictOut:
    try:
        reply = _stub.Predict(pb.PredictRequest(features=body.features), timeout=SETTINGS.timeout)
    except grpc.RpcError as exc:
        code = 504 if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED else 503
        raise HTTPException(status_code=code, detail=f"model-service {MODEL_SERVICE}: {exc.code().name}") from None
    return PredictOut(prediction=reply.prediction, model_version=reply.model_version)


@api.get("/health")
def health() -> dict[str, str]:
    try:
        grpc.channel_ready_future(_channel).result(timeout=1)
    except grpc.FutureTimeoutError:
        raise HTTPException(status_code=503, detail=f"model-service {MODEL_SERVICE} is not reachable") from None
    return {"status": "ok"}


app = Guard(api, SETTINGS)

if __name__ == "__main__":
    import uvicorn

    forget_keys()  # only their digests stay in this process
    if not SETTINGS.keys:
        print("api-service: no API key is set (API_KEY_<NAME>): every request but /health is refused", file=sys.stderr)
    # uvicorn's own access log would be a second, unstructured one: guard.py writes one JSON line per request
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "19100")), access_log=False,
                timeout_keep_alive=5, limit_concurrency=200)
