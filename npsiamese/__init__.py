"""npsiamese: Siamese convolutional networks for one-shot Omniglot, from scratch in NumPy and Numba."""
__version__ = "0.1.0"
