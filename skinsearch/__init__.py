"""skinsearch: hyperparameter search for skin-lesion image classifiers on Ray Tune."""

__version__ = "0.1.0"
