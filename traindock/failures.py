"""Expected failures end the command with one line on stderr and a non-zero exit; tracebacks are
left for bugs."""

import os
import sys

import httpx
import typer

from traindock.client import CliError

INTERRUPTED, BROKEN_PIPE = 130, 141  # the shell's codes for SIGINT and SIGPIPE


def _where(error: httpx.RequestError) -> str:
    try:
        return str(error.request.url.copy_with(path="/", query=None, fragment=None)).rstrip("/")
    except RuntimeError:
        return "the API"


def _say(message: str, code: int) -> int:
    print(message, file=sys.stderr, flush=True)
    return code


def run_cli(app: typer.Typer, argv: list[str] | None = None) -> int:
    # Not typer's main(): it turns a broken pipe into a silent exit 1.
    command = typer.main.get_command(app)
    try:
        with command.make_context("traindock", list(sys.argv[1:] if argv is None else argv)) as context:
            command.invoke(context)
        return 0
    except typer.Exit as done:  # --help
        return done.exit_code
    except typer.TyperException as error:  # usage errors: click's own message and exit code
        error.show()
        return error.exit_code
    except (typer.Abort, KeyboardInterrupt):
        return _say("interrupted", INTERRUPTED)
    except CliError as error:
        return _say(str(error), 1)
    except (httpx.ConnectError, httpx.ConnectTimeout) as error:
        return _say(f"cannot reach {_where(error)} ({error}): is `traindock up` running? "
                    "Set --url or TRAINDOCK_API_URL.", 1)
    except httpx.TimeoutException as error:
        return _say(f"{_where(error)} did not answer in time", 1)
    except httpx.TransportError as error:
        return _say(f"the connection to {_where(error)} failed: {error}", 1)
    except BrokenPipeError:
        # The reader went away (`| head`); stdout cannot be flushed at exit any more either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return _say("output closed before the command finished", BROKEN_PIPE)
