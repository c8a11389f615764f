"""Evaluation: `i2i eval` and the image-quality metrics."""
