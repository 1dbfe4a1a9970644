"""Datasets used by the examples."""
from .planar import circles, peaks, peaks_function, peaks_grid, random_rotation, spirals
from .mnist import load_mnist, mnist_root, random_shift
