"""etagger: named-entity tagging as a batch data pipeline on TensorFlow 2 and Apache Beam."""

__version__ = "0.1.0"
