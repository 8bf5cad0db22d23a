"""PyTorch implementation (mirrors keras_impl file for file)."""
