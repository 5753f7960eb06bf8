"""FedFleet: federated learning over simulated heterogeneous device fleets.

The core (scenario, profiles, population, cost, rounds, selection, planning, aggregation,
recording, engine) imports neither ray nor torch; those live in ``workloads`` and ``execution``.
"""

__version__ = "0.1.0"


class FedFleetError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


class InputError(FedFleetError):
    """Bad input (scenario, profile, trace, file); ``field`` names where."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)
