"""Basic auth and TLS files of the HTTP endpoint: validation that names files (never secrets), rotation."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import bcrypt
import pytest

from cilium_node_exporter.exposition import web_auth
from cilium_node_exporter.exposition.web_auth import BasicAuth, TlsConfig, WebConfigError


def header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def users_file(path: Path, **users: str) -> Path:
    path.write_text("".join(f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode()}\n" for u, p in users.items()))
    return path


def test_basic_auth_accepts_only_the_right_pair(tmp_path: Path) -> None:
    auth = BasicAuth(str(users_file(tmp_path / "users", prom="pw", other="x")))
    assert auth.allows(header("prom", "pw")) and auth.allows(header("prom", "pw"))
    assert auth.allows(header("other", "x"))
    for bad in (None, "", "Bearer abc", "Basic !!!", header("prom", "nope"), header("nobody", "pw"),
                "Basic " + base64.b64encode(b"no-colon").decode()):
        assert not auth.allows(bad), bad


@pytest.mark.parametrize("content", ["prom:plaintext-password\n", "prom\n", "", "# only a comment\n",
                                     "prom:$2y$05$short\n"])
def test_a_bad_users_file_names_the_file_not_the_content(tmp_path: Path, content: str) -> None:
    path = tmp_path / "users"
    path.write_text(content)
    with pytest.raises(WebConfigError) as exc:
        BasicAuth(str(path))
    assert str(path) in str(exc.value) and "plaintext-password" not in str(exc.value)


def test_users_file_is_reread_when_it_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web_auth, "RELOAD_CHECK", 0.0)
    path = users_file(tmp_path / "users", prom="old")
    auth = BasicAuth(str(path))
    assert auth.allows(header("prom", "old"))
    new = users_file(tmp_path / "users.new", prom="new")
    os.replace(new, path)  # a Secret update swaps the file
    assert auth.allows(header("prom", "new")) and not auth.allows(header("prom", "old"))
    path.write_text("garbage\n")  # a broken update keeps the previous users
    os.utime(path, ns=(1, 1))
    assert auth.allows(header("prom", "new"))


def test_unreadable_tls_files_are_one_error_line_and_exit_1(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError, match=str(tmp_path / "absent.crt")):
        TlsConfig(str(tmp_path / "absent.crt"), str(tmp_path / "absent.key"))
    res = subprocess.run([sys.executable, "-m", "cilium_node_exporter", "--listen-address=127.0.0.1:0",
                          "--sources=hubble", f"--web-tls-cert-file={tmp_path}/absent.crt",
                          f"--web-tls-key-file={tmp_path}/absent.key"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 1
    errors = [line for line in res.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "absent.crt" in errors[0], res.stderr
