"""A V2 server that is correct by default and whose every rule can be broken by a switch.

It proves that the conformance checks can fail: tests/test_v2_kill_rate.py turns each switch on
in turn and expects the checks the switch names to fail. Protocol areas live in their own route
modules (``v2_rest.py``, ``v2_grpc.py``); ``app.py`` composes them.
"""
