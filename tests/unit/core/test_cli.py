import subprocess
import sys

from click.testing import CliRunner

from kgrag.cli import COMMANDS, cli


def test_help_lists_all_commands():
    r = CliRunner().invoke(cli, ["--help"])
    assert r.exit_code == 0
    for name in COMMANDS:
        assert name in r.output


def test_help_imports_nothing_heavy():
    code = (
        "import sys; from kgrag.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch','spacy','faiss','falkordb','neo4j','sentence_transformers',"
        "'transformers','matplotlib','pydantic','numpy') if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "HEAVY=", out.stdout


def test_import_kgrag_is_light():
    code = "import sys, kgrag; print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy','torch','click','pydantic')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_registered_command_resolves():
    import importlib

    import click

    for name, (target, _) in COMMANDS.items():
        mod, attr = target.split(":")
        m = importlib.import_module(mod)  # a mistyped module fails here
        cmd = getattr(m, attr, None)
        assert isinstance(cmd, click.Command), f"{mod} lacks the click command {attr} for 'kgrag {name}'"
        assert cmd.name == name, f"COMMANDS[{name!r}] points at the command {cmd.name!r}"


def test_unknown_command_fails():
    r = CliRunner().invoke(cli, ["nope"])
    assert r.exit_code != 0
