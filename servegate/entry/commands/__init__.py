"""The subcommands of ``servegate``: one module each, each with ``register(subparsers)``."""

#: modules whose register() adds a subcommand, in the order --help lists them
COMMANDS = (
    "servegate.entry.commands.serve",
    "servegate.entry.commands.prepare",
    "servegate.entry.commands.run",
    "servegate.entry.commands.load",
    "servegate.entry.commands.experiment",
    "servegate.entry.commands.report",
    "servegate.entry.commands.gate",
    "servegate.entry.commands.compare",
    "servegate.entry.commands.doctor",
    "servegate.entry.commands.image",
)
