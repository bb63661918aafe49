"""One trial's training, with no Ray and no MLflow: the epoch loop, its optimizers and learning
rate schedules, metrics, checkpoints and their plots."""
