"""The kind backend: reference servers as KServe InferenceServices in a local kind cluster.

``manifests`` and ``modelcar`` are plain data (unit-tested without a cluster); ``cluster``
drives the kind and kubectl command lines and installs KServe; ``backend`` deploys, waits,
port-forwards and deletes.
"""
