"""Ready-made classifiers built from contdepth fields (the MNIST experiments of seeds 000 and 002)."""
from .mnist import BLOCKS, DEFAULT_DEPTH, MNIST_MODELS, ODEClassifier, build_mnist_model

__all__ = ["ODEClassifier", "build_mnist_model", "MNIST_MODELS", "DEFAULT_DEPTH", "BLOCKS"]
