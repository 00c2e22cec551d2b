"""Keras (tf_keras, Keras 2 API) layers of the tagger: embeddings, encoders."""
