"""Load testing: metrics with raw samples, result files, thresholds, run validity, and the glue
that turns the protocol clients into Locust users (used by loadtests/ and the experiments)."""
