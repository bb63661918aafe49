"""After a search: the best trial, confirmation over seeds, the exported bundle and predict,
the report and the summary lines."""
