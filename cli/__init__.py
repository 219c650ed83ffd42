"""`reelflow`: run the service and drive runs from a terminal. Talks to PostgreSQL and the
broker directly, so it works without the API. Every command takes `--json`.

Bad input ends with one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import sys

from typer._click import exceptions as click_errors
from typer.exceptions import Abort, Exit

from cli import revise, runs, service
from cli.app import CliError, app
from reelflow.errors import ReelflowError

COMMAND_GROUPS = (service, runs, revise)  # each registers its commands on `app` when imported


def main() -> None:
    try:
        result = app(standalone_mode=False)
        if isinstance(result, int) and result:  # --help and friends return their exit code
            raise SystemExit(result)
    except Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except Abort:
        sys.stderr.write("aborted\n")
        raise SystemExit(130) from None
    except click_errors.NoArgsIsHelpError as exc:
        sys.stdout.write((exc.ctx.get_help() if exc.ctx else "") + "\n")
        raise SystemExit(2) from None
    except click_errors.ClickException as exc:
        sys.stderr.write(f"error: {exc.format_message()}\n")
        raise SystemExit(exc.exit_code) from None
    except (CliError, ReelflowError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(1) from None
    except OSError as exc:  # database or broker unreachable
        sys.stderr.write(f"error: cannot reach a server: {exc}\n")
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as exc:  # a bug or an outage: one line here, the details in -v logs
        sys.stderr.write(f"error: {type(exc).__name__}: {exc}\n")
        raise SystemExit(1) from None
