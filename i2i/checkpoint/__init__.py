"""Weights files: self-describing checkpoints, run directories, the reference implementation's .pth."""
