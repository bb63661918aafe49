"""The names of the files skinsearch writes, in one place.

A storage holds ``mlflow.db`` (the default tracking store) and one folder per search. A search
folder holds ``search.yaml`` (the resolved spec and how the search was started), Tune's state,
one ``trial_*`` folder per trial, ``confirmation.json`` once it was confirmed, and
``test_evaluation.json`` once a model exported from it was scored on its held-out test split. A trial folder
holds Tune's ``params.json`` and ``result.json`` and ``checkpoint_*`` folders, each with a
``state.json`` that describes it, the model and the optimizer (and, for a trial that averages its
weights, the weights being trained).
"""

SEARCH_FILE = "search.yaml"
CONFIRMATION_FILE = "confirmation.json"  # in the confirmed search's folder
HELD_OUT_FILE = "test_evaluation.json"  # in the folder of the search a bundle was exported from
STATE_FILE = "state.json"  # in each checkpoint: epoch, metrics, hyperparameters, evaluation
MODEL_FILE = "model.pt"
OPTIMIZER_FILE = "optimizer.pt"
# with ema: the weights being trained (model.pt holds their average)
TRAINING_MODEL_FILE = "training_model.pt"
CHECKPOINT_FILES = (STATE_FILE, MODEL_FILE, OPTIMIZER_FILE)  # in every checkpoint
