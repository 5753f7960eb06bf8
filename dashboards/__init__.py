"""FedFleet dashboards: self-contained HTML reports and a live Dash app over run directories.

Reads only the run files (parquet tables and manifest.json); never imports the simulator.
"""

from __future__ import annotations

from dashboards.report import write_comparison_dashboard, write_run_dashboard

__all__ = ["write_run_dashboard", "write_comparison_dashboard"]
