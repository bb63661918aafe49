"""What a search is: the validated spec of a search-space file, the hyperparameters a trial
takes, and the plan compiled from them (the Tune space, its configurations, the objective)."""
