"""Runnable examples: ``python -m fastrnn.examples.sunspots`` (also ``text_generation``,
``bidirectional``). Each has ``main(...)`` returning its metrics."""
