"""The package runs without the source tree: no experiments/ imports, console scripts declared."""

import ast
import configparser
import importlib
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = os.path.join(ROOT, "keras_ssl")
SCRIPTS = ("keras-ssl-train", "keras-ssl-evaluate", "keras-ssl-export")


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
