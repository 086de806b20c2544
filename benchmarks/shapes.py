"""The data shapes the benchmarks measure on."""

N, SIDE, CLASSES, BATCH = 60_000, 28, 10, 256  # Fashion-MNIST's training split, d2l's batch
FEATURES = SIDE * SIDE
DIGITS_N, DIGITS_F = 1797, 64  # scikit-learn's digits: 1797 images of 8 x 8
