"""HuggingFace tasks: example inputs, how each protocol dialect carries them, and the checks
of meaning that hold even for random-weight models."""
