"""The model: a logistic regression whose weights live in model/weights.json (published as a Bundle).

Replace `predict` with yours; keep its signature: named numeric features in, a number out."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

MODEL_DIR = Path(os.environ.get("MODEL_DIR", Path(__file__).resolve().parent / "model"))


def load(model_dir: Path = MODEL_DIR) -> dict[str, float]:
    return {k: float(v) for k, v in json.loads((model_dir / "weights.json").read_text()).items()}


def predict(weights: dict[str, float], features: dict[str, float]) -> float:
    z = weights.get("bias", 0.0) + sum(weights.get(name, 0.0) * value for name, value in features.items())
    return 1.0 / (1.0 + math.exp(-z))
