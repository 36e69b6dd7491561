"""References to secret values: `{env: NAME}` or `{file: path}`, never the value itself."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr, model_validator

from specs.base import StrictModel


class SecretRef(StrictModel):
    env: str | None = Field(default=None, description="Take the value from this environment variable.")
    file: str | None = Field(
        default=None, description="Take the value from this file (relative to the spec file; `~` is home)."
    )

    @model_validator(mode="after")
    def _one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("a secret reference needs exactly one of 'env' or 'file'")
        return self

    def describe(self) -> str:
        return f"env {self.env}" if self.env is not None else f"file {self.file}"

    def identity(self, base: Path) -> str:
        """Which secret this is, wherever the reference is written: the variable, or the file's absolute path."""
        return f"env {self.env}" if self.env is not None else f"file {os.path.abspath(self.path(base) or '')}"

    def path(self, base: Path) -> Path | None:
        return None if self.file is None else base / os.path.expanduser(self.file)

    def problem(self, base: Path) -> str | None:
        """Why the value cannot be had, or None."""
        if self.env is not None:
            return None if os.environ.get(self.env) else f"environment variable {self.env} is not set"
        path = self.path(base)
        assert path is not None
        return None if path.is_file() else f"file {path} does not exist"

    def resolve(self, base: Path) -> SecretStr:
        if self.env is not None:
            value = os.environ.get(self.env)
            if not value:
                raise KeyError(f"environment variable {self.env} is not set")
            return SecretStr(value)
        path = self.path(base)
        assert path is not None
        return SecretStr(path.read_text(encoding="utf-8"))
