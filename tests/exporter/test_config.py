"""Flags, environment variables and their validation."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from cilium_node_exporter import __version__
from cilium_node_exporter.cli import main
from cilium_node_exporter.config import FLAGS, Config, ConfigError, build_parser, parse_args, parse_listen
from cilium_node_exporter.units import UnitError, parse_duration, parse_envelope, parse_quantity


def test_defaults() -> None:
    cfg = parse_args([], environ={"NODE_NAME": "node-a", "NODE_IP": "10.0.0.7"})
    assert cfg.listen_address == ":9969"
    assert cfg.sources.names == ("hubble", "kubelet", "apiserver", "agent", "settings")
    assert cfg.sources.optional == {"agent", "settings"}  # auto: used where this node has them
    assert cfg.envoy and cfg.envoy_namespace == "" and cfg.envoy_pod_selector == "k8s-app=cilium-envoy"
    assert cfg.envoy_container == "cilium-envoy"
    assert cfg.settings_from == ("agent-api", "configmap") and cfg.settings_interval == 60
    assert cfg.agent_api_socket == "/var/run/cilium/cilium.sock" and cfg.settings_configmap == "cilium-config"
    assert cfg.hubble_address == "unix:///var/run/cilium/hubble.sock"
    assert cfg.node_name == "node-a"
    assert cfg.kubelet_address == "https://10.0.0.7:10250"
    assert cfg.agent_metrics_address == "http://10.0.0.7:9962/metrics"
    assert cfg.memory_envelope == (200 * 2**20, 500 * 2**20)
    assert cfg.extra_labels == () and cfg.label_cap == 50
    assert cfg.apiserver_address == ""  # no KUBERNETES_SERVICE_HOST: not in a pod


def test_defaults_in_a_pod_bracket_ipv6_hosts() -> None:
    env = {"NODE_IP": "fd00:10:244::5", "KUBERNETES_SERVICE_HOST": "fd00:96::1", "KUBERNETES_SERVICE_PORT": "443"}
    cfg = parse_args([], environ=env)
    assert cfg.kubelet_address == "https://[fd00:10:244::5]:10250"
    assert cfg.agent_metrics_address == "http://[fd00:10:244::5]:9962/metrics"
    assert cfg.apiserver_address == "https://[fd00:96::1]:443"
    assert parse_args([], environ={"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
                      ).apiserver_address == "https://10.96.0.1:443"


@pytest.mark.parametrize(("text", "names", "optional"), [
    ("auto", ("hubble", "kubelet", "apiserver", "agent", "settings"), {"agent", "settings"}),
    ("auto,agent", ("hubble", "kubelet", "apiserver", "agent", "settings"), {"settings"}),
    ("agent,auto,settings", ("hubble", "kubelet", "apiserver", "agent", "settings"), set()),
    ("hubble,kubelet,apiserver", ("hubble", "kubelet", "apiserver"), set()),
    ("settings,hubble,settings", ("settings", "hubble"), set()),
])
def test_sources_auto_and_explicit(text: str, names: tuple[str, ...], optional: set[str]) -> None:
    """auto makes agent and settings optional; a source named explicitly is always required."""
    sources = parse_args(["--sources", text], environ={}).sources
    assert sources.names == names and sources.optional == optional
    assert all(n in sources for n in names) and list(sources) == list(names)


@pytest.mark.parametrize(("text", "parsed"), [(":9969", ("", 9969)), ("0.0.0.0:1", ("0.0.0.0", 1)),
                                              ("[::]:9969", ("::", 9969)), ("[fd00::1]:80", ("fd00::1", 80)),
                                              ("localhost:9969", ("localhost", 9969))])
def test_listen_addresses(text: str, parsed: tuple[str, int]) -> None:
    assert parse_listen(text) == parsed


@pytest.mark.parametrize(("node_ip", "listen"), [("10.0.0.5", "10.0.0.5:9969"), ("fd00:10::5", "[fd00:10::5]:9969")])
def test_address_flags_expand_node_ip_bracketing_ipv6(node_ip: str, listen: str) -> None:
    """The chart passes --listen-address=$NODE_IP:9969: the kubelet leaves it alone, the exporter brackets."""
    env = {"NODE_IP": node_ip}
    cfg = parse_args(["--listen-address=$NODE_IP:9969", "--kubelet-address=https://$NODE_IP:10250",
                      "--hubble-address=$NODE_IP:4244", "--node-name=$NODE_IP"], environ=env)
    host = listen.rsplit(":", 1)[0]
    assert cfg.listen_address == listen and parse_listen(cfg.listen_address)[0] == node_ip
    assert cfg.kubelet_address == f"https://{host}:10250" and cfg.hubble_address == f"{host}:4244"
    assert cfg.node_name == "$NODE_IP"  # only address flags are expanded
    assert parse_args([], environ={**env, "CNE_LISTEN_ADDRESS": "$NODE_IP:1"}).listen_address == \
        listen.replace("9969", "1")


def test_an_address_naming_an_unset_variable_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"--apiserver-address: .*KUBERNETES_SERVICE_HOST, which is not set"):
        parse_args(["--apiserver-address=https://$KUBERNETES_SERVICE_HOST:443"], environ={})


@pytest.mark.parametrize("flag", ["--web-tls-cert-file", "--web-tls-key-file", "--web-tls-client-ca-file",
                                  "--web-basic-auth-users-file"])
def test_the_replaced_web_flags_point_at_the_web_configuration_file(flag: str) -> None:
    with pytest.raises(ConfigError, match=f"^{flag} was replaced by --web-config-file"):
        parse_args([f"{flag}=/x"], environ={})


def test_the_web_configuration_file_takes_the_ecosystems_spelling_too() -> None:
    assert parse_args(["--web.config.file=/etc/web.yml"], environ={}).web_config_file == "/etc/web.yml"
    assert parse_args(["--web-config-file=/etc/web.yml"], environ={}).web_config_file == "/etc/web.yml"


def test_a_listen_list_binds_each_address_once() -> None:
    cfg = parse_args(["--listen-address=$NODE_IP:9969,127.0.0.1:9969,127.0.0.1:9969",
                      "--health-listen-address=127.0.0.1:9971"], environ={"NODE_IP": "fd00::5"})
    assert cfg.listen_addresses == [("fd00::5", 9969), ("127.0.0.1", 9969)]
    assert cfg.health_listen_addresses == [("127.0.0.1", 9971)]
    with pytest.raises(ConfigError, match="--listen-address: give at least one"):
        parse_args(["--listen-address=,"], environ={})


def test_the_scrape_timeout_offset_must_leave_a_budget() -> None:
    with pytest.raises(ConfigError, match="--scrape-timeout-offset must be below --scrape-timeout"):
        parse_args(["--scrape-timeout=1s", "--scrape-timeout-offset=1s"], environ={})


@pytest.mark.parametrize("text", ["::1:9969", "[::1:9969", "[nothost]:1", ":99999", "9969"])
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(ConfigError, match="--listen-address"):
        parse_args(["--listen-address", text], environ={})


def test_config_has_one_field_per_flag_and_no_defaults() -> None:
    assert [f.name for f in fields(Config)] == [f.attr for f in FLAGS]
    assert all(f.default is f.default_factory for f in fields(Config))  # both MISSING: defaults live in FLAGS
    assert len({f.name for f in FLAGS}) == len(FLAGS)


def test_environment_sets_every_flag_and_flags_win() -> None:
    env = {"CNE_LISTEN_ADDRESS": "127.0.0.1:19969", "CNE_SOURCES": "hubble,agent",
           "CNE_KUBELET_INSECURE_SKIP_VERIFY": "true", "CNE_MEMORY_ENVELOPE": "1Gi-2Gi",
           "CNE_EXTRA_LABELS": "protocol,policy", "CNE_HUBBLE_STALL_TIMEOUT": "90s"}
    cfg = parse_args([], environ=env)
    assert cfg.listen_address == "127.0.0.1:19969"
    assert cfg.sources.names == ("hubble", "agent") and not cfg.sources.optional
    assert cfg.kubelet_insecure_skip_verify is True
    assert cfg.memory_envelope == (2**30, 2 * 2**30)
    assert cfg.extra_labels == ("protocol", "policy")
    assert cfg.hubble_stall_timeout == 90
    assert parse_args(["--sources", "kubelet"], environ=env).sources.names == ("kubelet",)


def test_every_flag_has_an_env_var_in_help() -> None:
    parser = build_parser({})
    for action in parser._actions:
        opt = action.option_strings[0] if action.option_strings else ""  # the flag's name; then its aliases
        if opt.startswith("--") and opt not in ("--help", "--version"):
            env = "CNE_" + opt[2:].upper().replace("-", "_")
            assert env in (action.help or ""), opt


@pytest.mark.parametrize(("argv", "needle"), [
    (["--sources", "hubble,bogus"], "--sources"),
    (["--settings-from", "agent-api,etcd"], "--settings-from"),
    (["--settings-from", ""], "--settings-from"),
    (["--settings-interval", "1s"], "--settings-interval"),
    (["--envoy", "perhaps"], "--envoy"),
    (["--memory-envelope", "500Mi-200Mi"], "--memory-envelope"),
    (["--memory-envelope", "lots"], "--memory-envelope"),
    (["--listen-address", "nohost"], "--listen-address"),
    (["--extra-labels", "pod"], "--extra-labels"),
    (["--label-cap", "0"], "--label-cap"),
    (["--hubble-stall-timeout", "soon"], "--hubble-stall-timeout"),
    (["--kubelet-insecure-skip-verify", "maybe"], "--kubelet-insecure-skip-verify"),
    (["--hubble-tls-cert", "/x.crt"], "--hubble-tls-key"),
    (["--log-format", "xml"], "--log-format"),
    (["--no-such-flag"], "unrecognized"),
])
def test_bad_values_name_the_flag(argv: list[str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace("-", r"\-")):
        parse_args(argv, environ={})


def test_quantities_and_durations() -> None:
    assert parse_quantity("500Mi") == 500 * 2**20
    assert parse_quantity("1G") == 10**9
    assert parse_quantity("1.5Gi") == int(1.5 * 2**30)
    assert parse_quantity("524288000") == 524288000
    assert parse_envelope("200M-500M") == (200 * 10**6, 500 * 10**6)
    assert parse_duration("1h30m") == 5400 and parse_duration("250ms") == 0.25 and parse_duration("7") == 7
    for bad in ("", "5 apples", "-1Mi"):
        with pytest.raises(UnitError):
            parse_quantity(bad)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cilium_node_exporter", *args], capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin"})


def test_cli_bad_flag_is_one_line_and_exit_2() -> None:
    res = run_cli("--memory-envelope", "9-1")
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cilium-node-exporter: error: --memory-envelope")


def test_cli_version_and_help() -> None:
    res = run_cli("--version")
    assert res.returncode == 0 and __version__ in res.stdout
    res = run_cli("--help")
    assert res.returncode == 0 and "--hubble-address" in res.stdout and "CNE_HUBBLE_ADDRESS" in res.stdout


@pytest.mark.parametrize(("content", "needle"), [
    (None, "cannot read kubeconfig {path}: No such file or directory"),
    ("just text\n", "kubeconfig {path} is not a kubeconfig"),
    ("a: [unclosed\n", "kubeconfig {path} is not YAML"),
    ("apiVersion: v1\nkind: Config\nclusters: []\n", "cannot load kubeconfig {path}: Invalid kube-config file")])
def test_a_bad_kubeconfig_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  content: str | None, needle: str) -> None:
    path = tmp_path / "kubeconfig"
    if content is not None:
        path.write_text(content)
    assert main([f"--kubeconfig={path}", "--sources=apiserver", "--listen-address=127.0.0.1:0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cilium-node-exporter: error: --kubeconfig: ") and "\n" not in err, err
    assert needle.format(path=path) in err
