"""Bring-up: the one description of the node graph, and the pip-only launcher built on it."""
