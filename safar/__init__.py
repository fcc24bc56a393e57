"""Safar: a self-hosted, warehouse-native customer engagement platform."""

__version__ = "0.1.0"
