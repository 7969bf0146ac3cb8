"""Sub-commands of ``python -m training`` (and of ``bnfold``), two modules each.

``COMMANDS`` lists them. A command ``NAME`` (``export-module`` -> module
``export_module``) is:

- ``training/commands/NAME_options.py``: its parser only. It exposes
  ``register(subparsers)``, which adds the sub-parser with its options (declared
  once as typed fields, see ``training.options``). It must not import torch,
  numpy-heavy or onnx modules: ``--help`` and argument errors are answered from
  it alone, fast (tests/training/commands/test_cli.py checks it for every command).
- ``training/commands/NAME.py``: ``run(args) -> int``, the work, imported only
  when the command runs.

Adding a command is adding its name here and those two modules.
"""

COMMANDS = ("train", "fold", "export", "export-module", "verify", "all")


def module_of(command: str) -> str:
    """The module stem of a command: ``export-module`` -> ``export_module``."""
    return command.replace("-", "_")
