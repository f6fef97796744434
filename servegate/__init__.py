"""servegate: a conformance and load-testing gate for HuggingFace model-serving runtimes."""

__version__ = "0.1.0"
