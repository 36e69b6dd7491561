"""POSIX hosts: local, or reached by SSH."""
