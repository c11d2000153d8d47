"""mobilepre: preprocessing inside Keras image models, compression, validation and budgeted bundles."""

__version__ = "0.1.0"
