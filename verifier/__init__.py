"""verifier: prove from the wire whether ECS traffic is encrypted."""

__version__ = "0.1.0"
