"""Exit codes shared by ``scan`` and ``scan_project`` (pip-audit's and osv-scanner's):
0 clean, 1 findings at or above the threshold, 2 a usage or input error."""

from __future__ import annotations

from django.core.management.base import CommandError

EXIT_FINDINGS = 1
EXIT_USAGE = 2


def usage_error(message: str) -> CommandError:
    return CommandError(message, returncode=EXIT_USAGE)


def findings_error(message: str) -> CommandError:
    return CommandError(message, returncode=EXIT_FINDINGS)


class GateExitCodes:
    """Mixin for a BaseCommand: a bad option exits 2 through ``call_command`` too (from the
    command line argparse already exits 2; Django's ``call_command`` would give 1)."""

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        argparse_error = parser.error

        def error(message):
            if parser.called_from_command_line:
                argparse_error(message)  # prints the usage and exits 2
            raise usage_error(f"Error: {message}")

        parser.error = error
        return parser
