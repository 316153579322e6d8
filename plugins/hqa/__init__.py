"""``hqa``: Hierarchical Quantized Autoencoder plugins (photos: ``hqa``, digits: ``hqa-digits``)."""
