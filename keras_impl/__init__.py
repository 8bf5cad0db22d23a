"""Keras 3 implementation (mirrors pytorch_impl file for file)."""
