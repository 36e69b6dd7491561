"""Where the contract is: model-interface/ beside this file (in a container) or one level up (in the project)."""

import sys
from pathlib import Path

_here = Path(__file__).resolve().parent
sys.path.insert(0, str(next(p for p in (_here / "model-interface", _here.parent / "model-interface") if p.is_dir())))

from contract import load  # noqa: E402

__all__ = ["load"]
