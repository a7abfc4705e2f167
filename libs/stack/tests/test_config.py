"""StackConfig: ports, URLs, the environment each service gets, and validation (no processes)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tillsammans_stack.launcher import Stack, StackConfig, StackError, free_base_port, log_tail, port_in_use


def test_defaults_follow_the_documented_layout() -> None:
    config = StackConfig()
    assert config.root == Path(".tillsammans")
    assert config.orgs == ["school", "region", "social"]
    assert config.services == ["intake", "mapping", "consent", "meetings"]
    assert config.nats_url == "nats://127.0.0.1:4333"
    assert config.port("school", "intake") == 8101
    assert config.port("school", "meetings") == 8104
    assert config.port("region", "intake") == 8111
    assert config.port("social", "consent") == 8123
    assert config.url("region", "mapping") == "http://127.0.0.1:8112"
    assert len(set(config.ports().values())) == 1 + 12 + 3
    assert [config.idp_port(org) for org in config.orgs] == [8131, 8132, 8133]  # after every service's slot
    assert config.issuer("region") == "http://127.0.0.1:8132"
    assert config.log_path("social", "consent") == Path(".tillsammans/logs/social-consent.log")


def test_a_known_service_keeps_its_port_whatever_subset_runs() -> None:
    config = StackConfig(orgs=["school", "region"], services=["meetings", "intake", "audit"], base_port=9000)
    assert config.port("school", "intake") == 9001
    assert config.port("school", "meetings") == 9004
    assert config.port("region", "meetings") == 9014
    assert config.port("region", "audit") == 9015  # services beyond the four take the slots after them


def test_service_env_makes_a_member_of_the_stack(tmp_path: Path) -> None:
    config = StackConfig(root=tmp_path, orgs=["school", "region"], services=["intake"], nats_port=4999,
                         base_port=9100, otel_endpoint="http://127.0.0.1:4318",
                         extra_env={"TILLSAMMANS_LOG_LEVEL": "DEBUG"},
                         database_urls={("region", "intake"): "postgresql+psycopg://u@h/region_intake"})
    env = config.service_env("region", "intake", "pw")
    assert env["TILLSAMMANS_ORG"] == "region"
    assert json.loads(env["TILLSAMMANS_PEERS"]) == ["school", "region"]
    assert env["TILLSAMMANS_NATS_URL"] == "nats://127.0.0.1:4999"
    assert (env["TILLSAMMANS_NATS_USER"], env["TILLSAMMANS_NATS_PASSWORD"]) == ("region", "pw")
    assert env["TILLSAMMANS_DATA_DIR"] == str((tmp_path / "data").resolve())
    assert env["TILLSAMMANS_DEV_MODE"] == "true"
    assert json.loads(env["TILLSAMMANS_OIDC_ISSUERS"]) == {
        org: [{"issuer": f"http://127.0.0.1:{port}", "audience": f"tillsammans-{org}", "development": True}]
        for org, port in (("school", 9121), ("region", 9122))}
    assert env["TILLSAMMANS_INTAKE_PORT"] == "9111"
    assert env["TILLSAMMANS_INTAKE_HOST"] == "127.0.0.1"
    assert env["TILLSAMMANS_INTAKE_DATABASE_URL"] == "postgresql+psycopg://u@h/region_intake"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:4318"
    assert env["OTEL_BSP_SCHEDULE_DELAY"] == "200"
    assert env["TILLSAMMANS_LOG_LEVEL"] == "DEBUG"
    assert "TILLSAMMANS_INTAKE_DATABASE_URL" not in config.service_env("school", "intake", "pw")
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in StackConfig(services=["intake"]).service_env("school", "intake", "pw")


def test_the_services_settings_class_reads_that_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tillsammans_intake.config import IntakeSettings

    config = StackConfig(root=tmp_path, orgs=["school", "region"], services=["intake"], base_port=9200)
    for name, value in config.service_env("region", "intake", "pw").items():
        monkeypatch.setenv(name, value)
    settings = IntakeSettings()
    assert (settings.org, settings.peers, settings.port) == ("region", ["school", "region"], 9211)
    assert settings.nats_password is not None and settings.nats_password.get_secret_value() == "pw"
    assert settings.resolved_database_url == f"sqlite:///{(tmp_path / 'data' / 'region' / 'intake.db').resolve()}"


def test_each_pair_of_organisations_shares_a_secret_no_third_one_gets(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from tillsammans_meetings.config import MeetingsSettings

    config = StackConfig(root=tmp_path, orgs=["school", "region", "social"], services=["meetings"])
    seen: dict[str, MeetingsSettings] = {}
    for org in config.orgs:
        with monkeypatch.context() as patch:
            for name, value in config.service_env(org, "meetings", "pw").items():
                patch.setenv(name, value)
            seen[org] = MeetingsSettings()
    school, region, social = seen["school"], seen["region"], seen["social"]
    assert school.pair_secret("region") == region.pair_secret("school")
    assert school.pair_secret("region") not in (social.pair_secret("school"), social.pair_secret("region"))
    assert set(social.pair_secrets) == {"school", "region"}
    own = {settings.child_key_secret.get_secret_value() for settings in seen.values()}
    assert len(own) == 3 and "tillsammans-development-child-key" not in own
    # Made once and kept (replicas must still match after a restart), readable by this user only.
    again = StackConfig(root=tmp_path, orgs=["school", "region", "social"], services=["meetings"])
    assert again.key_secrets() == config.key_secrets()
    assert (tmp_path / "secrets.json").stat().st_mode & 0o777 == 0o600


def test_inherited_settings_the_launcher_decides_are_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    stack = Stack(orgs=["school"], services=["intake"])
    assert stack._controlled("TILLSAMMANS_INTAKE_PORT")
    assert stack._controlled("TILLSAMMANS_NATS_PASSWORD")
    assert stack._controlled("TILLSAMMANS_INTAKE_DATABASE_URL")
    assert not stack._controlled("TILLSAMMANS_LOG_LEVEL")
    assert not stack._controlled("PATH")


@pytest.mark.parametrize("kwargs, message", [
    ({"orgs": ["School"]}, "lowercase"),
    ({"orgs": ["school", "school"]}, "distinct"),
    ({"services": []}, "at least one"),
    ({"base_port": 65530}, "out of range"),
    ({"services": ["intake"], "database_urls": {("school", "mapping"): "sqlite://"}}, "not an (org, service)"),
])
def test_a_bad_configuration_is_refused_with_a_reason(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        StackConfig(**kwargs)  # type: ignore[arg-type]


def test_unknown_names_are_refused() -> None:
    config = StackConfig(orgs=["school"], services=["intake"])
    with pytest.raises(KeyError, match="unknown organisation"):
        config.port("region", "intake")
    with pytest.raises(KeyError, match="unknown service"):
        config.url("school", "meetings")


def test_describe_is_what_stack_json_holds_before_anything_starts() -> None:
    stack = Stack(orgs=["school", "region"], services=["intake", "consent"], nats_port=4400, base_port=7000)
    assert stack.describe() == {
        "nats_url": "nats://127.0.0.1:4400",
        "orgs": {"school": {"intake": "http://127.0.0.1:7001", "consent": "http://127.0.0.1:7003"},
                 "region": {"intake": "http://127.0.0.1:7011", "consent": "http://127.0.0.1:7013"}},
        "docs": {"school": {"intake": "http://127.0.0.1:7001/docs", "consent": "http://127.0.0.1:7003/docs"},
                 "region": {"intake": "http://127.0.0.1:7011/docs", "consent": "http://127.0.0.1:7013/docs"}},
        "issuers": {"school": {"issuer": "http://127.0.0.1:7021", "audience": "tillsammans-school"},
                    "region": {"issuer": "http://127.0.0.1:7022", "audience": "tillsammans-region"}},
    }
    table = stack.summary()
    assert "region  consent  http://127.0.0.1:7013  http://127.0.0.1:7013/docs" in table


def test_the_idp_command_line_serves_the_organisations_audience() -> None:
    config = StackConfig(orgs=["school", "region"], base_port=7000)
    assert config.idp_args("region")[-5:] == ["tillsammans_stack.idp", "--port", "7022", "--audience",
                                              "tillsammans-region"]


def test_start_refuses_taken_ports_before_starting_anything(tmp_path: Path) -> None:
    base = free_base_port(1)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", base + 1))
        blocker.listen()
        assert port_in_use("127.0.0.1", base + 1)
        stack = Stack(root=tmp_path, orgs=["school"], services=["intake"], base_port=base, nats_port=base + 50)
        with pytest.raises(StackError, match=rf"ports already in use: school/intake \({base + 1}\)"):
            stack.start(quiet=True)
    assert stack.pids() == {}


def test_start_refuses_a_service_that_is_not_installed(tmp_path: Path) -> None:
    stack = Stack(root=tmp_path, orgs=["school"], services=["intake", "nosuchservice"], base_port=free_base_port(1))
    with pytest.raises(StackError, match="not installed: tillsammans_nosuchservice"):
        stack.start(quiet=True)
    assert stack.pids() == {}


def test_nats_credentials_exist_only_once_started() -> None:
    with pytest.raises(StackError, match="not started"):
        Stack(orgs=["school"], services=["intake"]).nats_credentials("school")


def test_log_tail_keeps_the_last_lines(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_text("".join(f"line {n}\n" for n in range(100)))
    assert log_tail(path, 3) == "line 97\nline 98\nline 99"
    assert log_tail(tmp_path / "missing.log") == ""
