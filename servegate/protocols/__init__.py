"""One client per protocol, shared by the conformance suite, load tests and readiness checks."""
