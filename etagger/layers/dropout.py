"""Dropout over token sequences, optionally with one mask per sequence (variational)."""

import tf_keras as keras


def sequence_dropout(rate: float, variational: bool = False) -> keras.layers.Dropout:
    """Dropout for [B, T, D] inputs. ``variational``: one mask per sequence, the same at every
    step (Gal & Ghahramani 2016), instead of a fresh mask per token."""
    return keras.layers.Dropout(rate, noise_shape=(None, 1, None) if variational else None)
