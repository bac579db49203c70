"""The command-line grammar: Docker's (pflag) rules, Docker's messages."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from dockyard.cli import flags


def _cli() -> flags.Group:
    @flags.group(invoke_without_command=True)
    @flags.option("--root", envvar="FLAGS_TEST_ROOT", default="/var/lib/x")
    @flags.pass_context
    def top(ctx: flags.Context, root: str) -> None:
        ctx.obj = {"root": root}

    @flags.command("run", context_settings={"allow_interspersed_args": False})
    @flags.option("-d", "--detach", is_flag=True)
    @flags.option("-i", "--interactive", is_flag=True)
    @flags.option("-t", "--tty", is_flag=True)
    @flags.option("-e", "--env", multiple=True)
    @flags.option("--name")
    @flags.option("-p", "--publish", multiple=True)
    @flags.option("--cpus", type=float)
    @flags.option("--sig-proxy/--no-sig-proxy", default=True)
    @flags.argument("image")
    @flags.argument("command", nargs=-1)
    @flags.pass_context
    def run(ctx: flags.Context, **kw: Any) -> None:
        ctx.obj["run"] = kw

    @flags.command("rm")
    @flags.option("-f", "--force", is_flag=True)
    @flags.argument("containers", nargs=-1, required=True)
    @flags.pass_context
    def rm(ctx: flags.Context, **kw: Any) -> None:
        ctx.obj["rm"] = kw

    @flags.command("rename")
    @flags.argument("old")
    @flags.argument("new")
    @flags.pass_context
    def rename(ctx: flags.Context, **kw: Any) -> None:
        ctx.obj["rename"] = kw

    @flags.command("images")
    @flags.argument("repository", required=False)
    @flags.option("-n", "--last", type=int, default=-1)
    @flags.pass_context
    def images(ctx: flags.Context, **kw: Any) -> None:
        ctx.obj["images"] = kw

    for cmd in (run, rm, rename, images):
        top.add_command(cmd)
    return top


def parse(*args: str) -> dict[str, Any]:
    cli = _cli()
    seen: dict[str, Any] = {}
    original = cli.callback

    def capture(ctx: flags.Context, root: str) -> None:
        original(ctx, root)
        seen["obj"] = ctx.obj  # the subcommand fills it in after this returns

    cli.callback = capture
    cli.main(list(args), prog_name="dockyard")
    return seen["obj"]


def test_clusters_values_and_equals_forms() -> None:
    kw = parse("run", "-dit", "-eA=1", "-e", "B=2", "--env=C=3", "-p80:80", "--name=web",
               "--cpus", "1.5", "busybox")["run"]  # fmt: skip
    assert kw["detach"] and kw["interactive"] and kw["tty"]
    assert kw["env"] == ("A=1", "B=2", "C=3")
    assert kw["publish"] == ("80:80",)
    assert kw["name"] == "web" and kw["cpus"] == 1.5
    assert kw["image"] == "busybox" and kw["command"] == ()


def test_run_stops_at_the_image() -> None:
    kw = parse("run", "-d", "busybox", "ls", "-l", "--name", "x")["run"]
    assert kw["command"] == ("ls", "-l", "--name", "x")
    assert kw["name"] is None


def test_bool_values_and_negation() -> None:
    assert parse("run", "--detach=false", "busybox")["run"]["detach"] is False
    assert parse("run", "--no-sig-proxy", "busybox")["run"]["sig_proxy"] is False
    assert parse("run", "--sig-proxy=false", "busybox")["run"]["sig_proxy"] is False
    assert parse("run", "busybox")["run"]["sig_proxy"] is True


def test_flags_after_arguments_and_double_dash() -> None:
    assert parse("rm", "a", "-f", "b")["rm"] == {"force": True, "containers": ("a", "b")}
    assert parse("rm", "--", "-f")["rm"] == {"force": False, "containers": ("-f",)}


def test_global_option_from_flag_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse("--root", "/tmp/a", "rm", "x")["root"] == "/tmp/a"
    monkeypatch.setenv("FLAGS_TEST_ROOT", "/tmp/env")
    assert parse("rm", "x")["root"] == "/tmp/env"


def test_optional_argument_and_typed_option() -> None:
    assert parse("images")["images"] == {"repository": None, "last": -1}
    assert parse("images", "busybox", "-n", "3")["images"] == {"repository": "busybox", "last": 3}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["rm"], "\"dockyard rm\" requires at least 1 argument. See 'dockyard rm --help'"),
        (["rename", "a"], "\"dockyard rename\" requires exactly 2 arguments. See 'dockyard rename --help'"),
        (["images", "a", "b"], "\"dockyard images\" accepts at most 1 argument. See 'dockyard images --help'"),
        (["run", "--bogus", "x"], "unknown flag: --bogus"),
        (["run", "-dz", "x"], "unknown shorthand flag: 'z' in -dz"),
        (["run", "x", "--name"], None),
        (["run", "--name"], "flag needs an argument: --name"),
        (["run", "--cpus", "many", "x"], 'invalid argument "many" for "--cpus" flag: not a number'),
        (["images", "-n", "x"], 'invalid argument "x" for "-n" flag: not an integer'),
        (["frob"], "'frob' is not a dockyard command, see 'dockyard --help'"),
    ],
)  # fmt: skip
def test_docker_messages(args: list[str], message: str | None) -> None:
    if message is None:  # after the image, --name is the container's argument
        assert parse(*args)["run"]["command"] == ("--name",)
        return
    with pytest.raises(flags.UsageError) as err:
        parse(*args)
    assert str(err.value) == message


def test_help_shows_usage_and_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(flags.Exit):
        parse("run", "--help")
    out = capsys.readouterr().out
    assert out.startswith("Usage:  dockyard run [OPTIONS] IMAGE [COMMAND...]\n")
    assert "  -d, --detach" in out and "  -e, --env list" in out and "      --cpus decimal" in out


def test_cli_startup_imports_stay_light() -> None:
    """Every command pays for what ``dockyard`` imports before it does anything."""
    code = (
        "import sys; import dockyard.cli.main; "
        "print(' '.join(m for m in ('re', 'json', 'enum', 'typing', 'click', 'subprocess', "
        "'shutil', 'hashlib', 'socket', 'tempfile') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
