"""Measurement: what to run (targets), running it under the shim (runner),
reading a process from outside (sampler), and the load generator for
services (load)."""
