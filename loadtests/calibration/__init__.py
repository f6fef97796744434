"""Test servers with known behaviour, so load-test figures can be checked against the truth."""
