"""`python -m reconciler`. Python puts the current directory first on sys.path for -m, where a
user's `specs/` or `providers/` directory would shadow recon's packages of the same name; so it
is dropped, unless the current directory is recon's own source tree."""

import os
import sys

_cwd = os.getcwd()
if not os.path.isfile(os.path.join(_cwd, "reconciler", "__init__.py")):
    sys.path[:] = [p for p in sys.path if p not in ("", _cwd)]

from reconciler.cli import main  # noqa: E402

main()
