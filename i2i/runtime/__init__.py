"""The process and the machine: process tuning, device and precision choice, the run's timeline."""
