"""The only Ray in skinsearch: the cluster, the searchers and schedulers, the trainable, the
driver's callbacks and the search that ties them together."""
