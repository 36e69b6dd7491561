"""The api-service: REST JSON in front of the model-service's gRPC Predict.

POST /predict {"features": {"tenure_months": 3, "support_calls": 4}} -> {"prediction": 0.71, "model_version": "1"}
GET /health -> {"status": "ok"} once the model-service answers.
"""

from __future__ import annotations

import os

import grpc
from fastapi import FastAPI, HTTPException
from interface import load
from pydantic import BaseModel, Field

pb, pb_grpc = load()
MODEL_SERVICE = os.environ.get("MODEL_SERVICE_ADDR", "127.0.0.1:19000")
app = FastAPI(title="churn-model api-service")
_channel = grpc.insecure_channel(MODEL_SERVICE)
_stub = pb_grpc.PredictorStub(_channel)


class PredictIn(BaseModel):
    features: dict[str, float] = Field(description="Named numeric features.")


class PredictOut(BaseModel):
    prediction: float
    model_version: str


@app.post("/predict")
def predict(body: PredictIn) -> PredictOut:
    try:
        reply = _stub.Predict(pb.PredictRequest(features=body.features), timeout=5)
    except grpc.RpcError as exc:
        raise HTTPException(status_code=503, detail=f"model-service {MODEL_SERVICE}: {exc.code().name}") from None
    return PredictOut(prediction=reply.prediction, model_version=reply.model_version)


@app.get("/health")
def health() -> dict[str, str]:
    try:
        grpc.channel_ready_future(_channel).result(timeout=1)
    except grpc.FutureTimeoutError:
        raise HTTPException(status_code=503, detail=f"model-service {MODEL_SERVICE} is not reachable") from None
    return {"status": "ok"}


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "19100")))
