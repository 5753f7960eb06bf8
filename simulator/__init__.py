"""FedFleet: federated learning over simulated heterogeneous device fleets.

The core (scenario, profiles, population, cost, rounds, selection, planning, aggregation,
recording, engine) imports neither ray nor torch; those live in ``workloads`` and ``execution``.
"""

__version__ = "0.1.0"

from simulator.errors import FedFleetError, InputError

__all__ = ["FedFleetError", "InputError", "__version__"]
