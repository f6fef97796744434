"""Every option of every ``servegate`` subcommand (and every option servegate adds to Locust)
explains itself in ``--help``."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from servegate.entry.cli import build_parser


def _parsers(
    parser: argparse.ArgumentParser, path: str = "servegate"
) -> list[tuple[str, argparse.ArgumentParser]]:
    """The parser and, depth first, every sub-command's parser, each with its command line."""
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _parsers(sub, f"{path} {name}")
    return found


def _without_help(parser: argparse.ArgumentParser) -> list[str]:
    return [
        "/".join(action.option_strings) or action.dest
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction)
        # SUPPRESS is a deliberate choice (an alias of a global option), not a forgotten help
        and not (action.help or "").strip()
    ]


def test_every_servegate_option_has_a_help_line():
    missing = {
        path: names for path, parser in _parsers(build_parser()) if (names := _without_help(parser))
    }
    assert missing == {}


def test_the_walk_reaches_the_load_subcommand_and_its_options():
    # the check above means something only if it sees the options it is about
    parsers = dict(_parsers(build_parser()))
    options = {o for a in parsers["servegate load"]._actions for o in a.option_strings}
    assert {"--ttft-ms", "--itl-ms", "--tokens", "--users"} <= options
    assert len(parsers) > 5


#: run in a process of its own: Locust monkey-patches ssl when imported, which recurses in a
#: pytest process where other tests have already imported ssl
_LOCUST_OPTIONS = """
import json
from locust import events
from locust.argument_parser import get_empty_argument_parser, setup_parser_arguments
import servegate.load.locust_plugin  # registers the options
parser = get_empty_argument_parser(add_help=True)
setup_parser_arguments(parser)
before = {a.dest for a in parser._actions}
events.init_command_line_parser.fire(parser=parser)
ours = [a for a in parser._actions if a.dest not in before]
print(json.dumps([[a.dest, a.option_strings, (a.help or "").strip()] for a in ours]))
"""


def test_every_option_servegate_adds_to_locust_has_a_help_line():
    out = subprocess.run(
        [sys.executable, "-c", _LOCUST_OPTIONS], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    ours = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"slo", "metrics_url", "metric", "thresholds"} <= {dest for dest, _, _ in ours}
    assert [options for _, options, text in ours if not text] == []
