"""Pure numpy building blocks: seeded streams, the cost model, the event clock, round outcomes,
job batches and the registries. Imports neither ray nor torch."""
