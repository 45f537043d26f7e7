"""The simulation harness: simulated applications, offline pre-training of M0, and `aift-sim`.

This package imports `aift_tf`; `aift_tf` never imports it.
"""
