"""Renderers: plans and apply reports as text (terminal or plain) and JSON."""
