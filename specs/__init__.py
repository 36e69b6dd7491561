"""The language users write: spec kinds (`specs.kinds.KINDS`), the YAML loader with positions, the
error tree and diagnostics, references between specs. Imports nothing itself, so that a module
taking only the error tree (`specs.errors`) does not load pydantic and every kind."""
