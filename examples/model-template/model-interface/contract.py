"""The gRPC classes of predict.proto, generated beside it when first imported (grpcio-tools).

Both services import this module; they find this folder beside them (in a container) or one
level up (in the project)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "_generated"


def load():  # type: ignore[no-untyped-def]
    """(messages module, grpc module) of predict.proto."""
    if not (OUT / "predict_pb2_grpc.py").exists():
        from grpc_tools import protoc

        OUT.mkdir(exist_ok=True)
        code = protoc.main(["protoc", f"-I{HERE}", f"--python_out={OUT}", f"--grpc_python_out={OUT}",
                            str(HERE / "predict.proto")])
        if code != 0:
            raise RuntimeError(f"protoc failed on {HERE / 'predict.proto'}")
    if str(OUT) not in sys.path:
        sys.path.insert(0, str(OUT))
    return importlib.import_module("predict_pb2"), importlib.import_module("predict_pb2_grpc")
