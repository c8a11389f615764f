"""Training: the shared trainer, validation, starting weights, several processes, the run report."""
