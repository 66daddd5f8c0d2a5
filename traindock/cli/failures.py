"""Expected failures end the command with one line on stderr and a non-zero exit; tracebacks are
left for bugs."""

import os
import signal
import sys
import threading

import httpx
import typer

from traindock.cli.client import CliError

INTERRUPTED, BROKEN_PIPE = 130, 141  # the shell's codes for SIGINT and SIGPIPE


def _where(error: httpx.RequestError) -> str:
    try:
        return str(error.request.url.copy_with(path="/", query=None, fragment=None)).rstrip("/")
    except RuntimeError:
        return "the API"


INTERRUPT_GRACE_S = 0.5
_interrupt = {"armed": False, "unsaid": threading.Lock()}  # the lock: held once "interrupted" was said


def _say(message: str, code: int) -> int:
    if code == INTERRUPTED and _interrupt["armed"] and not _interrupt["unsaid"].acquire(blocking=False):
        return code  # said already, by _end_now
    print(message, file=sys.stderr, flush=True)
    return code


def _end_now() -> None:
    """The process ends at once, with the same one line and exit code as an orderly interrupt."""
    if _interrupt["unsaid"].acquire(blocking=False):
        os.write(2, b"interrupted\n")
    os._exit(INTERRUPTED)


def _on_interrupt(signum, frame) -> None:
    """Ctrl-C: KeyboardInterrupt unwinds the command as usual (one line, exit 130), and the
    process ends within INTERRUPT_GRACE_S whatever the unwinding meets. It can meet a lock taken
    just before the signal and never released (httpcore takes its connection locks in __enter__
    methods, where KeyboardInterrupt may land after the acquire: closing the stream then waits on
    that lock for ever), or a full pipe at the final flush. A second Ctrl-C ends it at once."""
    if _interrupt["armed"]:
        _end_now()
    _interrupt["armed"] = True
    timer = threading.Timer(INTERRUPT_GRACE_S, _end_now)
    timer.daemon = True
    timer.start()
    raise KeyboardInterrupt


# Commands that run services: they stop in order on Ctrl-C (uvicorn and Celery handle it; `up` then
# drains its worker), never cut short.
SERVICE_COMMANDS = frozenset({"up", "api", "worker", "serve", "demo", "migrate"})


def run_cli(app: typer.Typer, argv: list[str] | None = None) -> int:
    """`argv` None: the process's own command line; a client command (not a service) then ends
    within a second of Ctrl-C."""
    command = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), None) if argv is None else None
    if argv is None and command not in SERVICE_COMMANDS and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_interrupt)
    return _run(app, argv)


def _run(app: typer.Typer, argv: list[str] | None) -> int:
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
