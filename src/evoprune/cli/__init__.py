"""The `evoprune` command line: thin; parses, calls the library, prints.

Each subcommand group lives in its own module with a ``register(subparsers)`` function. Bad input
(an `EvopruneError` or a usage error) is one line on stderr and exit code 2, no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from typing import Any, NoReturn

from evoprune.cli.data import release_outs
from evoprune.errors import EvopruneError
from evoprune.interrupts import errors_of_interrupts, raising

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # as a shell reports a process that SIGPIPE ended


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line: ``evoprune search: error: ...``, and an option
    is only its whole name (`--data` is not taken for `--dataset`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


# the modules that register the subcommands, in the order `evoprune --help` lists them
MODULES = ("search", "ticket", "baseline", "experiments", "analyze", "prune", "selection",
           "compare", "rerun", "studies")  # fmt: skip


def build_parser(command: str | None = None) -> Parser:
    """The command line. With `command`, only the module that defines it registers its parser
    in full (a command imports only what it runs: `evoprune search` loads no pandas); the other
    commands are their one-line help, which is all that `evoprune --help` shows."""
    from evoprune import __version__

    parser = Parser(prog="evoprune", description="Strong lottery tickets by evolutionary search.")
    parser.add_argument("--version", action="version", version=f"evoprune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name in MODULES:
        module = importlib.import_module(f"evoprune.cli.{name}")
        if command is None or command in module.COMMANDS:
            module.register(sub)
        else:
            for each, text in module.COMMANDS.items():
                sub.add_parser(each, help=text)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    command = next((a for a in argv if not a.startswith("-")), "")  # "": --help, --version
    try:  # building the parser imports each command's module: Ctrl-C may come meanwhile
        args = build_parser(command).parse_args(argv)
    except KeyboardInterrupt:
        print(f"{'evoprune ' + command if command else 'evoprune'}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    # Ctrl-C, and SIGTERM as a scheduler sends it, stop a command the same way: one line, exit
    # 130, no half-written run folder (a run's files are removed before its result.json exists)
    with raising(signal.SIGINT, KeyboardInterrupt), raising(signal.SIGTERM, KeyboardInterrupt):
        try:
            with errors_of_interrupts():  # Ctrl-C inside a library that made it its own error
                return int(args.run(args) or 0)
        except EvopruneError as exc:
            print(f"evoprune {args.command}: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            print(f"evoprune {args.command}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except BrokenPipeError:  # `evoprune stats ... | head`: the reader has gone, say no more
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_BROKEN_PIPE
        except OSError as exc:  # a path the user gave: a folder under a file, no permission ...
            if exc.filename is None:
                raise
            print(
                f"evoprune {args.command}: error: {exc.filename}: {exc.strerror}", file=sys.stderr
            )
            return EXIT_USAGE
        finally:
            release_outs()
