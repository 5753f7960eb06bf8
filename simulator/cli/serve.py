"""`fedfleet serve [RUNS_DIR]`: the live dashboard (a Dash app, see dashboards/app.py).

Only argument parsing lives here; the app itself never imports the simulator.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

EPILOG = """examples:
  fedfleet serve                     # runs/ on http://127.0.0.1:8050
  fedfleet serve /tmp/sweep --port 8060
  fedfleet serve --host 0.0.0.0 --allow-remote   # other machines, with a token (printed)

Only paths inside RUNS_DIR are served; anything else a browser asks for is refused and logged.
"""


def cmd_serve(args: argparse.Namespace) -> int:
    runs_dir = Path(args.runs_dir)
    if not runs_dir.is_dir():
        print(f"fedfleet: error: RUNS_DIR: '{runs_dir}' is not a directory "
              "(run a scenario first, or pass the folder that holds your runs)", file=sys.stderr)
        return 2
    if not 0 < args.port < 65536:
        print(f"fedfleet: error: --port: {args.port} is not a TCP port (1-65535)", file=sys.stderr)
        return 2
    from dashboards.serving import MIN_TOKEN_CHARS, TOKEN_ENV, is_loopback, new_token

    token = args.token or os.environ.get(TOKEN_ENV) or None
    remote = not is_loopback(args.host)
    if remote and not args.allow_remote:
        print(f"fedfleet: error: --host: {args.host} is reachable from other machines; pass "
              "--allow-remote as well (a token is then required), or keep the default "
              "127.0.0.1", file=sys.stderr)
        return 2
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        print(f"fedfleet: error: --token: at least {MIN_TOKEN_CHARS} characters",
              file=sys.stderr)
        return 2
    if remote and token is None:
        token = new_token()
    try:  # fail with one line, before starting Dash, when the address is taken or invalid
        with socket.create_server((args.host, args.port)):
            pass
    except OSError as exc:
        print(f"fedfleet: error: cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); "
              "choose another --port", file=sys.stderr)
        return 2
    from dashboards.app import serve

    url = f"http://{args.host}:{args.port}/"
    if remote:
        print(f"fedfleet: warning: serving {runs_dir.resolve()} on {args.host}, reachable from "
              "other machines; plain HTTP, so use it on a trusted network or behind TLS. "
              "Every request needs the token.", file=sys.stderr)
    print(f"FedFleet dashboard for {runs_dir.resolve()} on "
          f"{url}{f'?token={token}' if token else ''} (Ctrl+C to stop)")
    try:
        serve(runs_dir, host=args.host, port=args.port, token=token)
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"fedfleet: error: cannot listen on {args.host}:{args.port} ({exc.strerror or exc})",
              file=sys.stderr)
        return 2
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("serve", help="live dashboard over a runs directory",
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog=EPILOG,
                              description="Serve a live dashboard: every run in RUNS_DIR, "
                                          "runs in progress refreshed every 2 s, comparisons.")
    p.add_argument("runs_dir", nargs="?", default="runs", metavar="RUNS_DIR",
                   help="folder holding the runs (default: runs)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8050, help="TCP port (default: 8050)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a --host other machines can reach (a token is then required)")
    p.add_argument("--token", default=None,
                   help="token every request must carry (default: $FEDFLEET_SERVE_TOKEN, or a "
                        "random one printed with the URL when --allow-remote)")
    p.set_defaults(func=cmd_serve)
    return p
