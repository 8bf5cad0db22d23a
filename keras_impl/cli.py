"""`python -m keras_impl train-args...`: parse, pick the Keras backend, then import Keras and train."""

from __future__ import annotations

import os
import sys

from shared.environment import quiet_frameworks, resolve_threads, silenced_stderr


def load_impl(backend, config):
    # The backend, device, precision and thread settings must be in the environment before
    # Keras (and through it TensorFlow, JAX or PyTorch) is first imported.
    os.environ["KERAS_BACKEND"] = backend
    if config.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        os.environ["JAX_PLATFORMS"] = "cpu"
    if backend == "jax":
        threads = resolve_threads(config.threads)
        os.environ.setdefault("XLA_FLAGS", f"--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={threads}")
        if config.dtype == "float64":
            os.environ["JAX_ENABLE_X64"] = "1"  # JAX silently truncates float64 to float32 otherwise
        if config.deterministic:
            os.environ["XLA_FLAGS"] += " --xla_gpu_deterministic_ops=true"
    # Keras imports pandas and matplotlib whenever they are installed (data adapters, a plot helper),
    # and TensorFlow (loaded on every backend) imports JAX for TFLite; this process uses none of them
    # off the JAX backend, and hiding them saves ~0.9 s (+0.5 s for JAX) of start-up per process
    for unused in ("pandas", "matplotlib", *(("jax",) if backend != "jax" else ())):
        sys.modules.setdefault(unused, None)
    with silenced_stderr():  # TensorFlow's C++ start-up lines ignore TF_CPP_MIN_LOG_LEVEL
        import keras  # noqa: F401  imports the backend framework first: TensorFlow before torch crashes

        try:
            import tensorflow  # noqa: F401  Keras loads it on every backend (tf.data, seeding)
        except ImportError:
            pass
        from keras_impl import train
    return train


def main(argv=None) -> int:
    quiet_frameworks()
    from shared.cli import main as shared_main

    return shared_main("keras", load_impl, argv)


if __name__ == "__main__":
    sys.exit(main())
