"""Scenario schema (pydantic): the only place YAML is parsed and validated."""
