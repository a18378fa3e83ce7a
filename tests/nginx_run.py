"""A real nginx (Debian's ``nginx-light``; ``.ci/run`` installs it when it can) running a
configuration of ``revieee proxy-config``, in a temporary prefix, for the proxy's tests."""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bot.sandbox import free_port

NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
)
TEMPS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def check(conf: str, tmp_path: Path) -> list[str]:
    """nginx's command line for ``conf`` (an ``http``-level file) in ``tmp_path``, after
    ``nginx -t`` passed."""
    assert NGINX is not None
    for name in (*TEMPS, "logs", "cache"):
        (tmp_path / name).mkdir(exist_ok=True)
    (tmp_path / "proxy.conf").write_text(conf)
    # as root nginx's workers run as nobody, who cannot enter pytest's 0700 temporary dirs
    user = "user root;\n" if os.geteuid() == 0 else ""
    (tmp_path / "nginx.conf").write_text(
        f"{user}pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/logs/error.log;\n"
        "events {}\nhttp {\n  access_log off;\n"
        + "".join(f"  {n}_temp_path {tmp_path}/{n};\n" for n in TEMPS)
        + f"  include {tmp_path}/proxy.conf;\n}}\n"
    )
    args = [NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")]
    checked = subprocess.run([*args, "-t"], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    return args


@contextmanager
def running(conf: str, tmp_path: Path) -> Iterator[int]:
    """Run ``conf`` (its ``listen 80 default_server;`` moved to a free local port); yields the
    port once ``/__proxy_health`` answers."""
    port = free_port()
    args = check(conf.replace("listen 80 default_server;", f"listen 127.0.0.1:{port};"), tmp_path)
    nginx = subprocess.Popen([*args, "-g", "daemon off;"], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                assert get(port, "/__proxy_health", "anything")[0] == 200
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield port
    finally:
        nginx.terminate()
        nginx.wait(10)


def get(
    port: int, path: str, host: str, headers: dict[str, str] | None = None
) -> tuple[int, str, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request("GET", path, headers={"Host": host, **(headers or {})})
        resp = conn.getresponse()
        return resp.status, resp.read().decode(), dict(resp.getheaders())
    finally:
        conn.close()
