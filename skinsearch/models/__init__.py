"""Image classifiers by name: ``build_model("cnn", hparams, input_size=64, num_classes=9)``.

Adding a model is one ``@register_model`` function in a module imported below, with the
hyperparameters only it takes declared there (``own=``); the parametrized test in
``tests/test_models.py`` picks it up.
"""

from skinsearch.models import cnn, efficientnet, mlp  # noqa: F401  (registers the built-in models)
from skinsearch.models._registry import (
    build_model,
    hparams_class,
    known_hparams,
    model_hparams,
    model_names,
    register_model,
    unregister_model,
)

__all__ = [
    "build_model",
    "hparams_class",
    "known_hparams",
    "model_hparams",
    "model_names",
    "register_model",
    "unregister_model",
]
