"""Streaming, order-independent aggregation of client updates.

Weighted update sums are accumulated in 64-bit fixed point (``SCALE`` = 2^32): integer addition
is associative, so the aggregate is bit-identical whatever the number of actors or the order in
which partial sums arrive, while the driver only ever holds one running sum (never all client
updates). Resolution after normalisation is 2^-32 / sum(weights), far below float32's epsilon.
"""

from simulator.aggregation.fedavg import Partial, apply_fedavg, quantize_weighted

__all__ = ["Partial", "apply_fedavg", "quantize_weighted"]
