"""The package runs without the source tree: no experiments/ imports, console scripts declared;
the programs check their flags before importing TensorFlow."""

import ast
import configparser
import importlib
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = os.path.join(ROOT, "keras_ssl")
SCRIPTS = ("keras-ssl-train", "keras-ssl-evaluate", "keras-ssl-export",
           "keras-ssl-select-labels")


def _imported_modules(path):
    with open(path) as file:
        tree = ast.parse(file.read(), filename=path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def test_the_package_never_imports_experiments():
    offenders = []
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                offenders += [f"{os.path.relpath(path, ROOT)}: {module}"
                              for module in _imported_modules(path)
                              if module.split(".")[0] == "experiments"]
    assert not offenders, offenders


def _declared_scripts():
    parser = configparser.ConfigParser()
    parser.read(os.path.join(ROOT, "setup.cfg"))
    lines = parser["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict(line.replace(" ", "").split("=") for line in lines)


def test_console_scripts_point_at_main_functions():
    scripts = _declared_scripts()
    assert set(scripts) == set(SCRIPTS)
    for target in scripts.values():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), target


@pytest.mark.parametrize("script, flag", [("keras-ssl-train", "--method"),
                                          ("keras-ssl-export", "--export_dir")])
def test_installed_console_script_prints_its_flags(script, flag):
    path = os.path.join(os.path.dirname(sys.executable), script)
    if not os.path.exists(path):
        pytest.skip(f"{script} is not installed next to {sys.executable} (pip install -e .)")
    # Run from outside the source tree, as an installed user would.
    process = subprocess.run([path, "--helpfull"], capture_output=True, text=True,
                             cwd=os.path.expanduser("~"), timeout=300,
                             env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    # absl ends --help and --helpfull with exit status 1.
    assert process.returncode == 1 and "Traceback" not in process.stderr, process.stderr[-3000:]
    assert f"  {flag}:" in process.stdout


# Each program's flags, and a check of them that must fail before TensorFlow
# is imported: a bad flag or path (and --helpfull) answers in well under a
# second instead of after the seconds an import of TensorFlow takes.
_CHECKS = {
    "train": (["--method=simclr", "--data=/no/such/folder"], "check_flags()"),
    "evaluate": (["--checkpoint=/no/such/run", f"--data={ROOT}"], "check_flags()"),
    "export": (["--checkpoint=/no/such/run", "--export_dir=/tmp/unused"], "export()"),
}


@pytest.mark.parametrize("program", sorted(_CHECKS))
def test_flags_are_checked_before_tensorflow_is_imported(program):
    args, check = _CHECKS[program]
    script = (
        "import sys\n"
        f"from keras_ssl.cli import {program} as cli\n"
        "cli.define_flags()\n"
        f"cli.FLAGS({['program', *args]!r})\n"
        "try:\n"
        f"    cli.{check}\n"
        "except (ValueError, FileNotFoundError) as error:\n"
        "    print(error)\n"
        "else:\n"
        "    sys.exit('the check passed a path that does not exist')\n"
        "loaded = [name for name in ('tensorflow', 'keras') if name in sys.modules]\n"
        "sys.exit(f'imported {loaded}' if loaded else 0)\n")
    process = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             cwd=ROOT, timeout=120)
    assert process.returncode == 0, process.stderr[-3000:]
    assert "/no/such/" in process.stdout


def test_train_flag_choices_match_the_library():
    # keras_ssl/cli/train.py lists the choices of --method, --optimizer,
    # --lr_schedule and --strategy without importing the modules that own them (they import
    # TensorFlow); the lists must not drift apart.
    from keras_ssl import configs
    from keras_ssl.cli import train
    from keras_ssl.distribute import STRATEGIES
    from keras_ssl.methods import available
    from keras_ssl.training.build import LR_SCHEDULES, OPTIMIZERS

    assert configs.methods() == available()
    assert train.OPTIMIZERS == tuple(OPTIMIZERS)
    assert train.LR_SCHEDULES == tuple(LR_SCHEDULES)
    assert train.STRATEGIES == tuple(STRATEGIES)
