"""practicum: deep-learning practicals as one recorded, reproducible, reported command each."""

__version__ = "0.1.0"
