"""Placeholder until this built-in plugin lands; replaced by its owner."""
