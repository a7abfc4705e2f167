"""The command line without a whole stack: token (from a real development provider), delegation, `down`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from tillsammans_common.auth import Role, TokenVerifier
from tillsammans_common.settings import IssuerConfig
from tillsammans_common.testing import free_port
from tillsammans_stack import cli
from tillsammans_stack.idp import create_app, serving
from tillsammans_stack.launcher import StackError


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, TokenVerifier]]:
    """A state directory whose stack.json names school's development provider (served here), and a verifier."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    root = tmp_path_factory.mktemp("root")
    (root / "stack.json").write_text(json.dumps({"issuers": {"school": {"issuer": issuer,
                                                                        "audience": "tillsammans-school"}}}))
    with serving(create_app(issuer=issuer, audience="tillsammans-school"), port=port):
        yield root, TokenVerifier({"school": [IssuerConfig(issuer=issuer, audience="tillsammans-school")]})


def test_token_signs_the_user_in_and_prints_a_token_the_services_accept(
        capsys: pytest.CaptureFixture[str], provider: tuple[Path, TokenVerifier]) -> None:
    root, verifier = provider
    assert cli.main(["token", "--root", str(root), "--org", "school", "--role", "BBA", "--user", "anna.bba",
                     "--unit", "norrskolan", "--unit", "sodraskolan"]) == 0
    token = capsys.readouterr().out.strip()
    principal = asyncio.run(verifier.verify(token))
    assert (principal.org, principal.user, principal.role, principal.client) == ("school", "anna.bba", Role.BBA, False)
    assert principal.units == {"norrskolan", "sodraskolan"}
    assert jwt.get_unverified_header(token)["alg"] == "RS256"


def test_token_for_a_client_is_an_integrations(capsys: pytest.CaptureFixture[str],
                                               provider: tuple[Path, TokenVerifier]) -> None:
    root, verifier = provider
    assert cli.main(["token", "--root", str(root), "--org", "school", "--client", "journal",
                     "--unit", "norrskolan"]) == 0
    principal = asyncio.run(verifier.verify(capsys.readouterr().out.strip()))
    assert (principal.user, principal.roles, principal.units, principal.client) == (
        "journal", {Role.INTEGRATION}, {"norrskolan"}, True)


def test_token_without_a_running_stack_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["token", "--root", str(tmp_path), "--org", "school", "--role", "bba", "--user", "anna"]) == 1
    assert "make up" in capsys.readouterr().err


def test_a_bad_role_fails_and_lists_the_valid_roles(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["token", "--org", "school", "--role", "boss", "--user", "anna"])
    assert exit_info.value.code != 0
    error = capsys.readouterr().err
    assert "invalid choice: 'boss'" in error
    assert all(role.value in error for role in Role)


def test_a_bad_org_fails(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["token", "--org", "Not An Org", "--role", "bba", "--user", "anna"])
    assert exit_info.value.code != 0
    assert "not an organisation id" in capsys.readouterr().err


def test_down_without_a_stack_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["down", "--root", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == "no stack running"


def test_a_stale_pid_file_is_not_a_running_stack(tmp_path: Path) -> None:
    # A live process that is not `tillsammans up`: the pid was reused after a crash.
    other = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        (tmp_path / "stack.pid").write_text(f"{other.pid}\n")
        assert cli.running_pid(tmp_path) is None
    finally:
        assert other.stdin is not None
        other.stdin.close()
        other.wait(timeout=10)
    (tmp_path / "stack.pid").write_text("999999999\n")
    assert cli.running_pid(tmp_path) is None
    (tmp_path / "stack.pid").write_text("garbage")
    assert cli.running_pid(tmp_path) is None


def test_demo_and_bench_are_imported_lazily_and_get_their_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[list[str]] = []
    module = types.ModuleType("tillsammans_stack.fake")
    module.main = lambda argv: received.append(argv) or 3  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tillsammans_stack.fake", module)
    monkeypatch.setitem(cli.DELEGATED, "fake", "a fake subcommand")
    assert cli.main(["fake", "--root", "x", "--help"]) == 3
    assert received == [["--root", "x", "--help"]]


def test_a_missing_subcommand_module_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.delegate("nosuchmodule", []) == 1
    assert "tillsammans_stack.nosuchmodule is not part of this installation" in capsys.readouterr().err


def test_a_subcommand_whose_dependency_is_missing_is_reported(capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_import(name: str) -> types.ModuleType:
        error = ModuleNotFoundError("No module named 'wrk'")
        error.name = "wrk"
        raise error

    monkeypatch.setattr(cli.importlib, "import_module", broken_import)
    assert cli.delegate("bench", []) == 1
    assert "could not import tillsammans_stack.bench: No module named 'wrk'" in capsys.readouterr().err


def test_a_stack_error_in_a_subcommand_is_a_message_not_a_traceback(capsys: pytest.CaptureFixture[str],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(argv: list[str]) -> int:
        raise StackError("not installed: tillsammans_mapping")

    module = types.ModuleType("tillsammans_stack.fake")
    module.main = fail  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tillsammans_stack.fake", module)
    assert cli.delegate("fake", []) == 1
    assert "tillsammans fake: not installed: tillsammans_mapping" in capsys.readouterr().err
