"""Hyperparameter search on Ray Tune (`run_search`): search specs, trials through the shared launcher, reports."""
