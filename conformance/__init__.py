"""The servegate conformance suite: one test per rule, features declared beside it."""
