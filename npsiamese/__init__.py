"""npsiamese: Siamese convolutional networks for one-shot Omniglot, from scratch in NumPy and Numba."""
import os

__version__ = "0.1.0"

# Numba's parallel kernels run on a thread pool. Its default OpenMP pool keeps
# its threads spinning after each kernel, and those spinning threads then
# compete with the BLAS threads of the very next matrix multiply: a training
# step measured 5-10x slower that way on 2 cores. The "workqueue" pool sleeps
# instead. Set NUMBA_THREADING_LAYER yourself to choose another one.
if "NUMBA_THREADING_LAYER" not in os.environ:
    import numba

    numba.config.THREADING_LAYER = "workqueue"
