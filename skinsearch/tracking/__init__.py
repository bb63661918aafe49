"""Experiment tracking: MLflow (the only module that talks to it) and TensorBoard event files."""
