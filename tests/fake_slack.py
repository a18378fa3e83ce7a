"""A small local Slack Web API server speaking the real wire format: form or JSON bodies in,
``{"ok": ...}`` JSON out, 429 with ``Retry-After`` when asked to. It records every call, and
also accepts posts to response URLs (``/response/<id>``) the way Slack's hooks do.

File uploads follow Slack's external-upload protocol (what ``files_upload_v2`` speaks):
``files.getUploadURLExternal`` hands out an upload URL on this server (``/upload/<file id>``),
the client POSTs the raw bytes there, and ``files.completeUploadExternal`` shares the file in a
channel (and thread); completed uploads are in :attr:`FakeSlack.uploads`.

What Slack refuses, it refuses here too: ``blocks`` and views are checked with slack_sdk's
models and the Block Kit limits (:mod:`tests.slack_rules`) and answered ``invalid_blocks``
(``views.publish``: ``invalid_arguments``), with the reasons in ``response_metadata``. Channel
membership: ``chat:write.public`` lets a bot post in a public channel it is not in, but a file
can only be shared where the bot is a member (``files.completeUploadExternal`` answers
``not_in_channel``, Slack's "Uploading files" guide), and Slack sends events (reactions) only
from channels the bot is in (Events API, "Event types": ``reaction_added`` needs the bot in the
conversation). ``conversations.join`` joins a public channel (``channels:join``); a private
one answers ``method_not_supported_for_channel_type``. :attr:`FakeSlack.members` is where the
bot is."""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from tests.slack_rules import message_problems, view_problems

MAX_SNIPPET = 1024 * 1024  # bytes of a file shared as a snippet


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    token: str | None
    at: float = field(default_factory=time.monotonic)  # when it arrived


@dataclass
class FakeSlack:
    calls: list[Call] = field(default_factory=list)
    responses: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # response URLs
    groups: dict[str, list[str]] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    rate_limits: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    served_429: int = 0
    upload_failures: int = 0  # the next N byte uploads to an upload URL answer 500
    socket_url: str | None = None  # what apps.connections.open hands out (Socket Mode)
    members: set[str] = field(default_factory=set)  # channel ids the bot has joined
    private: set[str] = field(default_factory=set)  # private channel ids (cannot be joined)

    def __post_init__(self) -> None:
        self._lock = threading.Condition()
        self._ts = itertools.count(1)
        self._file_ids = itertools.count(1)
        self._files: dict[str, dict[str, Any]] = {}  # upload URLs handed out, by file id
        self._uploads: list[dict[str, Any]] = []  # files shared (completed), in order
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return None

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.startswith("/upload/"):
                    with fake._lock:
                        refuse = fake.upload_failures > 0
                        fake.upload_failures -= int(refuse)
                    if refuse:
                        self._send(500, b"upload failed", "text/plain")
                        return
                    found = fake._receive_upload(self.path.removeprefix("/upload/"), raw)
                    self._send(200 if found else 404, b"OK" if found else b"", "text/plain")
                    return
                if self.path.startswith("/response/"):
                    with fake._lock:
                        fake.responses.append((self.path, json.loads(raw or b"{}")))
                        fake._lock.notify_all()
                    self._send(200, b"ok", "text/plain")
                    return
                method = self.path.removeprefix("/api/").split("?")[0]
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    args = json.loads(raw or b"{}")
                else:
                    args = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                    for key in ("blocks", "view"):
                        if isinstance(args.get(key), str):
                            args[key] = json.loads(args[key])
                token = (self.headers.get("Authorization") or "").removeprefix("Bearer ") or None
                status, body, headers = fake._answer(method, args, token)
                self._send(status, json.dumps(body).encode(), "application/json", headers)

            def _send(
                self, status: int, data: bytes, ctype: str, headers: dict[str, str] | None = None
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.api_url = self.url + "/api/"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- behaviour ----------------------------------------------------------------------------

    def fail(self, method: str, error: str, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` answer ``{"ok": false, "error": error}``."""
        self.errors[method] += [error] * times

    def rate_limit(self, method: str, retry_after: int = 1, times: int = 1) -> None:
        self.rate_limits[method] += [retry_after] * times

    def response_url(self, name: str = "1") -> str:
        return f"{self.url}/response/{name}"

    @staticmethod
    def channel_id(channel: str) -> str:
        if not channel.startswith("#"):
            return channel
        return "C" + hashlib.sha1(channel.encode()).hexdigest()[:8].upper()

    def _answer(
        self, method: str, args: dict[str, Any], token: str | None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._lock:
            if self.rate_limits.get(method):
                retry_after = self.rate_limits[method].pop(0)
                self.served_429 += 1
                return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)}
            self.calls.append(Call(method, args, token))
            self._lock.notify_all()
            if self.errors.get(method):
                return 200, {"ok": False, "error": self.errors[method].pop(0)}, {}
        ts = f"{int(time.time())}.{next(self._ts):06d}"
        channel = self.channel_id(str(args.get("channel", "")))
        if method == "auth.test":
            return 200, {"ok": True, "user_id": "UBOT", "team_id": "T1", "bot_id": "B1"}, {}
        refused = self._refused(method, args)
        if refused is not None:
            return 200, refused, {}
        if method == "conversations.join":
            if channel in self.private:
                return 200, {"ok": False, "error": "method_not_supported_for_channel_type"}, {}
            with self._lock:
                already = channel in self.members
                self.members.add(channel)
            answer: dict[str, Any] = {"ok": True, "channel": {"id": channel, "is_member": True}}
            if already:
                answer["warning"] = "already_in_channel"
            return 200, answer, {}
        if method == "chat.postMessage":
            message = {"text": args.get("text"), "ts": ts, "blocks": args.get("blocks")}
            return 200, {"ok": True, "channel": channel, "ts": ts, "message": message}, {}
        if method == "chat.update":
            return (
                200,
                {"ok": True, "channel": channel, "ts": args.get("ts"), "text": args.get("text")},
                {},
            )
        if method == "chat.postEphemeral":
            return 200, {"ok": True, "message_ts": ts}, {}
        if method == "views.publish":
            return 200, {"ok": True, "view": {"id": "V1", **(args.get("view") or {})}}, {}
        if method == "chat.getPermalink":
            ts_digits = str(args.get("message_ts")).replace(".", "")
            link = f"https://acme.slack.com/archives/{channel}/p{ts_digits}"
            return 200, {"ok": True, "channel": channel, "permalink": link}, {}
        if method == "apps.connections.open":
            if not (token or "").startswith("xapp-"):
                return 200, {"ok": False, "error": "not_allowed_token_type"}, {}
            return 200, {"ok": True, "url": self.socket_url}, {}
        if method == "files.getUploadURLExternal":
            if args.get("snippet_type") and int(args.get("length") or 0) > MAX_SNIPPET:
                # files.getUploadURLExternal: "snippets ... are limited to 1MB"
                return 200, {"ok": False, "error": "snippet_too_large"}, {}
            with self._lock:
                file_id = f"F{next(self._file_ids):08d}"
                self._files[file_id] = {
                    "filename": args.get("filename"),
                    "length": int(args.get("length") or 0),
                    "snippet_type": args.get("snippet_type"),
                    "content": None,
                }
            url = f"{self.url}/upload/{file_id}"
            return 200, {"ok": True, "upload_url": url, "file_id": file_id}, {}
        if method == "files.completeUploadExternal":
            return 200, self._complete_upload(args), {}
        if method == "usergroups.users.list":
            return 200, {"ok": True, "users": self.groups.get(str(args.get("usergroup")), [])}, {}
        return 200, {"ok": True}, {}

    def _refused(self, method: str, args: dict[str, Any]) -> dict[str, Any] | None:
        """Slack's answer to blocks, views and texts it would not take (None: it takes them)."""
        problem: tuple[str, list[str]] | None = None
        if method in ("chat.postMessage", "chat.update", "chat.postEphemeral"):
            problem = message_problems(args)
        elif method == "views.publish":
            problems = view_problems(args.get("view"))
            problem = ("invalid_arguments", problems) if problems else None
        if problem is None:
            return None
        error, problems = problem
        return {"ok": False, "error": error, "response_metadata": {"messages": problems}}

    def _receive_upload(self, file_id: str, raw: bytes) -> bool:
        with self._lock:
            pending = self._files.get(file_id)
            if pending is None:
                return False
            pending["content"] = raw
            return True

    def _complete_upload(self, args: dict[str, Any]) -> dict[str, Any]:
        files = args.get("files")
        listed = json.loads(files) if isinstance(files, str) else files or []
        shared = []
        with self._lock:
            channel = args.get("channel_id")
            if channel and channel not in self.members:
                return {"ok": False, "error": "not_in_channel"}
            for item in listed:
                pending = self._files.get(str(item.get("id")))
                if pending is None or pending["content"] is None:
                    return {"ok": False, "error": "file_not_found"}
            for item in listed:
                pending = self._files.pop(str(item["id"]))
                title = item.get("title") or pending["filename"]
                self._uploads.append(
                    {
                        "file_id": item["id"],
                        "filename": pending["filename"],
                        "content": pending["content"],
                        "length": pending["length"],
                        "snippet_type": pending["snippet_type"],
                        "channel_id": args.get("channel_id"),
                        "thread_ts": args.get("thread_ts"),
                        "title": title,
                        "initial_comment": args.get("initial_comment"),
                    }
                )
                shared.append({"id": item["id"], "name": pending["filename"], "title": title})
            self._lock.notify_all()
        return {"ok": True, "files": shared}

    # -- reading what happened ------------------------------------------------------------------

    @property
    def uploads(self) -> list[dict[str, Any]]:
        """Files shared so far: file_id, filename, content (bytes), channel_id, thread_ts,
        title, initial_comment (and the announced length)."""
        with self._lock:
            return [dict(u) for u in self._uploads]

    def of(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def post_times(self, thread_ts: str) -> list[float]:
        """When each post into a thread arrived (replies and files shared into it)."""
        with self._lock:
            return [
                c.at
                for c in self.calls
                if c.method in ("chat.postMessage", "files.completeUploadExternal")
                and c.args.get("thread_ts") == thread_ts
            ]

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("timed out waiting for the expected Slack calls")
                self._lock.wait(remaining)
