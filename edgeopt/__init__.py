"""edgeopt: optimize TensorFlow models with TF-TRT and serve them with Triton, as a Kubernetes operator."""

__version__ = "0.1.0"
