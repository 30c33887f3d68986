"""Datasets that work offline: ``from tapemagic.datasets import mnist``."""
