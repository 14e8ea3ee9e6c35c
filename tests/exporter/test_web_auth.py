"""The endpoint's web configuration (exporter-toolkit's ``--web.config.file`` format) and its basic auth.

The files under tests/data/web-config are shaped like the toolkit's own examples (its docs/web-config.yml and
web/testdata): each good one loads, each bad one is refused with one message naming the file and never a
secret. Basic auth is checked in-process with a counted bcrypt (what the cache, the gate and the per-peer
limit save is a number of bcrypt runs, not a wall-clock figure), and end to end against the real process.
"""

from __future__ import annotations

import base64
import os
import shutil
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
import trustme

from cilium_node_exporter.exposition import web_auth, web_config
from cilium_node_exporter.exposition.web_auth import BasicAuth, peer_key
from cilium_node_exporter.exposition.web_config import WebConfigError, WebConfigFile, load, load_with_context
from tests.support.paths import DATA
from tests.support.procs import Metrics
from tests.support.protected import ProtectedExporter

FIXTURES = DATA / "web-config"
PASSWORDS = {"alice": "alice-password", "bob": "bob-password", "carol": "carol-password"}


def header(user: str, password: str | bytes) -> str:
    raw = (password if isinstance(password, bytes) else password.encode())
    return "Basic " + base64.b64encode(user.encode() + b":" + raw).decode()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A server certificate (ECDSA) for 127.0.0.1, a client CA and a client certificate it signed."""
    d = tmp_path_factory.mktemp("pki")
    ca, client_ca, other_ca = trustme.CA(), trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "::1", "localhost")
    files = {name: d / name for name in ("ca.pem", "server.crt", "server.key", "client-ca.pem", "client.pem",
                                         "stranger.pem")}
    ca.cert_pem.write_to_path(str(files["ca.pem"]))
    server.cert_chain_pems[0].write_to_path(str(files["server.crt"]))
    server.private_key_pem.write_to_path(str(files["server.key"]))
    client_ca.cert_pem.write_to_path(str(files["client-ca.pem"]))
    client_ca.issue_cert("prometheus.monitoring.svc").private_key_and_cert_chain_pem.write_to_path(
        str(files["client.pem"]))
    other_ca.issue_cert("prometheus.monitoring.svc").private_key_and_cert_chain_pem.write_to_path(
        str(files["stranger.pem"]))
    return files


@pytest.fixture
def webdir(tmp_path: Path, pki: dict[str, Path]) -> Path:
    """The fixtures with the certificates they name beside them (paths in them are relative)."""
    d = tmp_path / "web"
    shutil.copytree(FIXTURES, d)
    for name in ("server.crt", "server.key", "client-ca.pem"):
        shutil.copy(pki[name], d / name)
    return d


# --- loading: the toolkit's good and bad cases ----------------------------------------------------------

@pytest.mark.parametrize("name", [*sorted(p.name for p in FIXTURES.glob("*.good.yml")), "web-config.yml"])
def test_the_toolkits_good_configurations_load(webdir: Path, name: str) -> None:
    loaded = load_with_context(str(webdir / name))
    tls = loaded.config.tls
    assert (loaded.context is not None) == (tls is not None) == ("tls_server_config" in (webdir / name).read_text())
    if tls is not None:
        assert tls.cert_file == str(webdir / "server.crt")  # relative to the configuration file


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.bad.yml")))
def test_the_toolkits_bad_configurations_are_refused_naming_the_file(webdir: Path, name: str) -> None:
    with pytest.raises(WebConfigError) as exc:
        load_with_context(str(webdir / name))
    assert str(webdir / name) in str(exc.value) or "somefile" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_client_certificates_nobody_verifies_are_refused(webdir: Path) -> None:
    with pytest.raises(WebConfigError, match="RequireAnyClientCert accepts client certificates nobody verified"):
        load(str(webdir / "tls_config_noAuth.requireanyclientcert.refused.yml"))


def test_cbc_suites_are_left_out_and_the_rest_served(webdir: Path, caplog: pytest.LogCaptureFixture) -> None:
    loaded = load_with_context(str(webdir / "web_config_noAuth_allCiphers.good.yml"))
    assert loaded.context is not None
    served = {c["name"] for c in loaded.context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert served == {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES128-GCM-SHA256",
                      "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305"}
    assert "CBC cipher suites left out" in caplog.text and "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA" in caplog.text


def test_without_a_cipher_list_tls_1_2_is_aead_only(webdir: Path) -> None:
    loaded = load_with_context(str(webdir / "web-config.yml"))
    assert loaded.context is not None
    tls12 = [c["name"] for c in loaded.context.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12 and all("GCM" in n or "CHACHA20" in n for n in tls12) and all(n.startswith("ECDHE") for n in tls12)


def test_inline_certificate_and_key_load_and_a_broken_key_is_refused(tmp_path: Path, pki: dict[str, Path]) -> None:
    def indent(path: Path) -> str:
        return "".join("    " + line for line in path.read_text().splitlines(keepends=True))

    path = tmp_path / "inline.yml"
    path.write_text(f"tls_server_config:\n  cert: |\n{indent(pki['server.crt'])}  key: |\n{indent(pki['server.key'])}")
    assert load_with_context(str(path)).context is not None
    path.write_text(f"tls_server_config:\n  cert: |\n{indent(pki['server.crt'])}  key: |\n    not a key\n")
    with pytest.raises(WebConfigError, match=r"cannot load the TLS certificate \(cert\)") as exc:
        load_with_context(str(path))
    assert "not a key" not in str(exc.value)


def test_tls_below_1_2_is_raised_to_1_2(tmp_path: Path, webdir: Path) -> None:
    path = webdir / "old.yml"
    path.write_text('tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS10\n')
    loaded = load_with_context(str(path))
    assert loaded.context is not None and loaded.context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_a_secret_is_never_in_a_message(tmp_path: Path) -> None:
    path = tmp_path / "users.yml"
    path.write_text("basic_auth_users:\n  john: plaintext-SECRET\n")
    with pytest.raises(WebConfigError) as exc:
        load(str(path))
    assert "SECRET" not in str(exc.value) and "john" in str(exc.value)


def test_a_changed_file_is_reloaded_and_a_broken_change_keeps_the_old(webdir: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web_config, "RELOAD_CHECK", 0.0)
    path = webdir / "live.yml"
    shutil.copy(webdir / "web_config_users_noTLS.good.yml", path)
    web = WebConfigFile(str(path))
    assert set(web.current().config.users) == {"alice", "bob", "carol"}
    path.write_text(f"basic_auth_users:\n  dave: {bcrypt.hashpw(b'x', bcrypt.gensalt(4)).decode()}\n")
    os.utime(path, ns=(1, 1))
    assert set(web.current().config.users) == {"dave"}
    path.write_text("basic_auth_users:\n  dave: doe\n")
    os.utime(path, ns=(2, 2))
    assert set(web.current().config.users) == {"dave"}
    shutil.copy(webdir / "web-config.yml", path)  # TLS switched on: needs a restart
    os.utime(path, ns=(3, 3))
    assert web.current().context is None and set(web.current().config.users) == {"dave"}


# --- basic auth in-process: what each check costs -------------------------------------------------------

class CountingBcrypt:
    """bcrypt.checkpw with a count of the runs (and an optional pause while one runs)."""

    def __init__(self) -> None:
        self.runs = 0
        self.hold = threading.Event()
        self.hold.set()
        self.inside = threading.Event()
        self._real = bcrypt.checkpw

    def __call__(self, password: bytes, digest: bytes) -> bool:
        self.runs += 1
        self.inside.set()
        self.hold.wait(10)
        return self._real(password, digest)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> CountingBcrypt:
    counter = CountingBcrypt()
    monkeypatch.setattr(web_auth.bcrypt, "checkpw", counter)
    return counter


def users(**passwords: str) -> dict[str, bytes]:
    return {u: bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)) for u, p in passwords.items()}


def test_the_right_pair_passes_and_costs_one_bcrypt(counted: CountingBcrypt) -> None:
    table = users(prom="pw", other="x")
    auth = BasicAuth(lambda: table)
    for _ in range(5):
        assert auth.check(header("prom", "pw"), "10.0.0.1") is None
    assert auth.check(header("other", "x"), "10.0.0.1") is None
    assert counted.runs == 2
    for bad, reason in ((None, "missing"), ("", "missing"), ("Bearer abc", "invalid"), ("Basic !!!", "invalid"),
                        ("Basic " + base64.b64encode(b"no-colon").decode(), "invalid"),
                        (header("prom", "nope"), "wrong_password"), (header("nobody", "pw"), "unknown_user")):
        assert auth.check(bad, "10.0.0.1") == reason, bad
    assert auth.failures == {"missing": 2, "invalid": 3, "unknown_user": 1, "wrong_password": 1, "throttled": 0}


def test_a_rehashed_users_file_keeps_the_right_password_and_drops_the_old(counted: CountingBcrypt) -> None:
    """helm upgrade with Helm's htpasswd: the same password, a new salt; then a real password change."""
    table = users(prom="pw")
    auth = BasicAuth(lambda: table)
    assert auth.check(header("prom", "pw")) is None
    table = users(prom="pw")  # re-salted
    assert auth.check(header("prom", "pw")) is None and counted.runs == 2
    table = users(prom="new")
    assert auth.check(header("prom", "pw")) == "wrong_password"
    assert auth.check(header("prom", "new")) is None


def test_a_repeated_wrong_password_costs_one_bcrypt(counted: CountingBcrypt) -> None:
    table = users(prom="pw")
    auth = BasicAuth(lambda: table)
    for _ in range(20):
        assert auth.check(header("prom", "stale"), "10.0.0.1") == "wrong_password"
    assert counted.runs == 1


def test_an_unknown_user_costs_a_bcrypt_like_a_known_one(counted: CountingBcrypt) -> None:
    table = users(prom="pw")
    auth = BasicAuth(lambda: table)
    assert auth.check(header("nobody", "pw"), "10.0.0.1") == "unknown_user"  # even with another user's password
    assert counted.runs == 1


def test_a_password_over_72_bytes_is_a_wrong_one_without_bcrypt(counted: CountingBcrypt) -> None:
    table = users(prom="p" * 72)
    auth = BasicAuth(lambda: table)
    assert auth.check(header("prom", "p" * 72 + "extra"), "10.0.0.1") == "wrong_password"
    assert auth.check(header("nobody", "q" * 200), "10.0.0.1") == "unknown_user"
    assert counted.runs == 0
    assert auth.check(header("prom", "p" * 72), "10.0.0.1") is None


def test_guessing_from_one_peer_is_throttled_and_other_peers_are_not(counted: CountingBcrypt) -> None:
    now = [0.0]
    table = users(prom="pw")
    auth = BasicAuth(lambda: table, clock=lambda: now[0])
    results = [auth.check(header("prom", f"guess-{i}"), "10.0.0.66") for i in range(10)]
    assert results == ["wrong_password"] * int(web_auth.PEER_BURST) + ["throttled"] * (10 - int(web_auth.PEER_BURST))
    assert auth.check(header("prom", "pw"), "10.0.0.7") is None  # Prometheus, from its own address
    assert auth.check(header("prom", "guess-x"), "fd00:5::1") == "wrong_password"
    assert peer_key("fd00:5::1") == peer_key("fd00:5::ffff") != peer_key("fd00:6::1")  # one /64, one peer
    assert peer_key("::ffff:10.0.0.66") == "10.0.0.66"
    now[0] += 1.0 / web_auth.PEER_RATE
    assert auth.check(header("prom", "guess-late"), "10.0.0.66") == "wrong_password"
    assert auth.failures["throttled"] == 10 - int(web_auth.PEER_BURST)


def test_one_check_runs_one_waits_and_the_rest_are_answered_at_once(counted: CountingBcrypt) -> None:
    table = users(prom="pw")
    auth = BasicAuth(lambda: table)
    counted.hold.clear()
    results: dict[str, str | None] = {}

    def check(peer: str) -> None:
        results[peer] = auth.check(header("prom", f"guess-{peer}"), peer)

    first = threading.Thread(target=check, args=("10.0.0.1",))
    first.start()
    assert counted.inside.wait(5)
    second = threading.Thread(target=check, args=("10.0.0.2",))
    second.start()
    waiters = [threading.Thread(target=check, args=(f"10.0.1.{i}",)) for i in range(8)]
    for t in waiters:
        t.start()
    for t in waiters:
        t.join(5)
    assert [results[f"10.0.1.{i}"] for i in range(8)] == ["throttled"] * 8  # no worker waits on the gate
    counted.hold.set()
    first.join(5)
    second.join(5)
    assert results["10.0.0.1"] == results["10.0.0.2"] == "wrong_password" and counted.runs == 2


# --- the real process -------------------------------------------------------------------------------------

def _get(url: str, ctx: ssl.SSLContext | None = None, auth: tuple[str, str] | None = None
         ) -> tuple[int, dict[str, str], str]:
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization", header(*auth))
    try:
        with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


@pytest.fixture
def served(webdir: Path) -> Iterator[ProtectedExporter]:
    """The toolkit's documented example (TLS, alice and bob, rate limit) on the real exporter."""
    with ProtectedExporter(webdir, "--sources=hubble", f"--hubble-address=unix://{webdir}/absent.sock",
                           f"--web.config.file={webdir / 'web-config.yml'}") as exp:
        yield exp


def test_the_documented_example_serves_https_basic_auth_and_open_probes(served: ProtectedExporter,
                                                                        pki: dict[str, Path]) -> None:
    exp, base = served, served.https
    trusted = ssl.create_default_context(cafile=str(pki["ca.pem"]))
    assert _get(base + "/metrics", trusted)[0] == 401
    assert _get(base + "/metrics", trusted, ("alice", "wrong"))[0] == 401
    status, _, body = _get(base + "/metrics", trusted, ("alice", PASSWORDS["alice"]))
    assert status == 200
    m = Metrics(body)
    assert m.value("cilium_node_exporter_web_auth_failures_total", reason="missing") == 1
    assert m.value("cilium_node_exporter_web_auth_failures_total", reason="wrong_password") == 1
    assert _get(base + "/healthz", trusted)[0] == 200  # probes need no password
    assert _get(exp.health_url + "/healthz")[0] == 200 and _get(exp.health_url + "/metrics")[0] == 404
    with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP to the TLS port
        urllib.request.urlopen(base.replace("https", "http") + "/healthz", timeout=5)
    assert "alice-password" not in exp.log()


def test_the_rate_limit_answers_429_beyond_its_burst(served: ProtectedExporter, pki: dict[str, Path]) -> None:
    base = served.https
    trusted = ssl.create_default_context(cafile=str(pki["ca.pem"]))
    codes = [_get(base + "/metrics", trusted, ("bob", PASSWORDS["bob"]))[0] for _ in range(26)]
    assert codes.count(200) >= 20 and 429 in codes, codes


def test_mutual_tls_and_allowed_sans(webdir: Path, pki: dict[str, Path]) -> None:
    trusted = ssl.create_default_context(cafile=str(pki["ca.pem"]))
    client = ssl.create_default_context(cafile=str(pki["ca.pem"]))
    client.load_cert_chain(str(pki["client.pem"]))
    stranger = ssl.create_default_context(cafile=str(pki["ca.pem"]))
    stranger.load_cert_chain(str(pki["stranger.pem"]))
    for name, allowed in (("web_config_auth_client_san.good.yml", True),
                          ("web_config_auth_client_san.denies.good.yml", False)):
        with ProtectedExporter(webdir, "--sources=hubble", f"--hubble-address=unix://{webdir}/absent.sock",
                               f"--web-config-file={webdir / name}", name=name) as exp:
            base = exp.https
            for ctx in (trusted, stranger):  # no client certificate; one from another CA
                with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
                    _get(base + "/metrics", ctx)
            if allowed:
                assert _get(base + "/metrics", client)[0] == 200
            else:
                with pytest.raises((urllib.error.URLError, ConnectionError, ssl.SSLError)):
                    _get(base + "/metrics", client)


def test_a_bad_web_configuration_stops_the_start_with_one_line_and_exit_2(webdir: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "cilium_node_exporter", "--listen-address=127.0.0.1:0",
                          "--sources=hubble",
                          f"--web-config-file={webdir / 'web_config_noAuth_certPath_invalid.bad.yml'}"],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 2
    errors = [line for line in res.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "somefile" in errors[0] and "Traceback" not in res.stderr, res.stderr


@pytest.mark.parametrize(("cipher", "served_ok"), [("ECDHE-ECDSA-AES128-GCM-SHA256", True),
                                                   ("ECDHE-ECDSA-CHACHA20-POLY1305", True),
                                                   ("ECDHE-ECDSA-AES128-SHA256", False),
                                                   ("ECDHE-ECDSA-AES256-SHA384", False),
                                                   ("ECDHE-ECDSA-AES128-SHA", False)])
def test_tls_1_2_handshakes_only_with_aead_suites(served: ProtectedExporter, pki: dict[str, Path], cipher: str,
                                                  served_ok: bool) -> None:
    """Issue 23 row 12 (security.md N13): a TLS 1.2 client offering one suite; CBC suites are refused."""
    ctx = ssl.create_default_context(cafile=str(pki["ca.pem"]))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(cipher)
    if served_ok:
        assert _get(served.https + "/healthz", ctx)[0] == 200
    else:
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            _get(served.https + "/healthz", ctx)
