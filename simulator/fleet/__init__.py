"""The device fleet: profiles, populations, availability, eligibility, energy and traces."""
