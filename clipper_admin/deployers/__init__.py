"""Deployers: ``python`` is built in; the framework deployers come from plugins."""
