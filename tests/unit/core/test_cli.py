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

    for name, (target, _) in COMMANDS.items():
        mod, attr = target.split(":")
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError:
            continue  # a command whose module is not part of this build is reported by the CLI
        assert hasattr(m, attr), f"{mod} lacks {attr} for 'kgrag {name}'"


def test_unknown_command_fails():
    r = CliRunner().invoke(cli, ["nope"])
    assert r.exit_code != 0
