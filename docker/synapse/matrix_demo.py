#!/usr/bin/env python3
"""The Matrix side of the OpenAgentIO demo stack (standard library only).

The same script serves the Synapse container of docker-compose.yml (with the
image's python) and scripts/demo (with the python of the Synapse virtualenv):

  config     write homeserver.yaml (and its log config, secrets and signing
             key) for a small single-server Synapse: SQLite, no federation,
             registration only through the shared secret, relaxed rate limits
  bootstrap  create the bot and the human user (register_new_matrix_user with
             the shared secret; users that exist are kept), and the public
             room #demo (created by the human, the bot invited)
  say        post a message as the human user and print the bot's answer as
             it is edited in place, until it stops changing (or contains
             --expect); exit 1 on timeout or when the bot posts a notice

Secrets come from the environment, never from the command line:
SYNAPSE_REGISTRATION_SHARED_SECRET (config), MATRIX_BOT_PASSWORD and
MATRIX_HUMAN_PASSWORD (bootstrap), and the password of `say --user` from the
variable named by --password-env (MATRIX_HUMAN_PASSWORD by default).
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


def fail(message: str) -> None:
    print(f"matrix_demo: {message}", file=sys.stderr)
    sys.exit(1)


def need_env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        fail(f"environment variable {name} is not set")
    return value


# --- config --------------------------------------------------------------------

def cmd_config(a: argparse.Namespace) -> None:
    shared_secret = need_env("SYNAPSE_REGISTRATION_SHARED_SECRET")
    data = os.path.abspath(a.dir)
    os.makedirs(os.path.join(data, "media_store"), exist_ok=True)

    # Secrets Synapse needs to keep across restarts, made once.
    secrets_path = os.path.join(data, "demo-secrets.json")
    if os.path.exists(secrets_path):
        with open(secrets_path) as f:
            kept = json.load(f)
    else:
        kept = {"macaroon_secret_key": secrets.token_urlsafe(32),
                "form_secret": secrets.token_urlsafe(32)}
        fd = os.open(secrets_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(kept, f)

    if a.log_file:
        handler = (f"    class: logging.FileHandler\n    formatter: precise\n"
                   f"    filename: {json.dumps(os.path.abspath(a.log_file))}\n")
    else:
        handler = "    class: logging.StreamHandler\n    formatter: precise\n"
    with open(os.path.join(data, "log.config"), "w") as f:
        f.write(
            "version: 1\nformatters:\n  precise:\n"
            "    format: '%(asctime)s - %(name)s - %(levelname)s - %(message)s'\n"
            f"handlers:\n  out:\n{handler}"
            f"root:\n  level: {a.log_level}\n  handlers: [out]\n"
            "disable_existing_loggers: false\n"
        )

    # JSON is YAML: every value below is written with json.dumps.
    high = '{"per_second": 1000, "burst_count": 1000}'
    config = {
        "server_name": a.server_name,
        "pid_file": os.path.join(data, "homeserver.pid"),
        "public_baseurl": a.public_baseurl,
        "listeners": [{
            "port": a.port, "bind_addresses": [a.bind], "type": "http", "tls": False,
            "x_forwarded": False, "resources": [{"names": ["client"], "compress": False}],
        }],
        "database": {"name": "sqlite3", "args": {"database": os.path.join(data, "homeserver.db")}},
        "log_config": os.path.join(data, "log.config"),
        "media_store_path": os.path.join(data, "media_store"),
        "signing_key_path": os.path.join(data, f"{a.server_name}.signing.key"),
        "registration_shared_secret": shared_secret,
        "enable_registration": False,
        "report_stats": False,
        "macaroon_secret_key": kept["macaroon_secret_key"],
        "form_secret": kept["form_secret"],
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "federation_domain_whitelist": [],
        "use_presence": False,
        "enable_metrics": False,
    }
    path = os.path.join(data, "homeserver.yaml")
    with open(path, "w") as f:
        f.write("# Written by matrix_demo.py config; rewritten on every start.\n")
        for key, value in config.items():
            f.write(f"{key}: {json.dumps(value)}\n")
        # The responder edits its answer up to twice a second: Synapse's
        # default message rate (0.2/s) would make the demo crawl.
        for key in ("rc_message", "rc_registration", "rc_joins_per_room", "rc_room_creation"):
            f.write(f"{key}: {high}\n")
        f.write(f"rc_login: {{\"address\": {high}, \"account\": {high}, \"failed_attempts\": {high}}}\n")
        f.write(f"rc_joins: {{\"local\": {high}, \"remote\": {high}}}\n")
        f.write(f"rc_invites: {{\"per_room\": {high}, \"per_user\": {high}, \"per_issuer\": {high}}}\n")
    os.chmod(path, 0o600)

    if not os.path.exists(config["signing_key_path"]):
        subprocess.run([sys.executable, "-m", "synapse.app.homeserver", "--config-path", path,
                        "--generate-keys"], check=True, stdout=subprocess.DEVNULL)
    print(path)


# --- the client-server API -----------------------------------------------------

class Matrix:
    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, body: Any = None, timeout: float = 30.0,
             ok_errcodes: tuple[str, ...] = ()) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        while True:
            try:
                with urllib.request.urlopen(req, timeout=timeout) as resp:
                    return json.loads(resp.read() or b"{}")
            except urllib.error.HTTPError as e:
                try:
                    err = json.loads(e.read() or b"{}")
                except ValueError:
                    err = {}
                if err.get("errcode") == "M_LIMIT_EXCEEDED":
                    time.sleep(err.get("retry_after_ms", 1000) / 1000.0)
                    continue
                if err.get("errcode") in ok_errcodes:
                    return err
                raise SystemExit(f"matrix_demo: {method} {path.split('?')[0]}: HTTP {e.code} "
                                 f"{err.get('errcode', '')} {err.get('error', '')}".rstrip())

    def login(self, user: str, password: str) -> str:
        r = self.call("POST", "/_matrix/client/v3/login", {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
            "initial_device_display_name": "openagentio demo script",
        })
        self.token = r["access_token"]
        return r["user_id"]

    def logout(self) -> None:
        if self.token:
            self.call("POST", "/_matrix/client/v3/logout", {})
            self.token = None

    def room_id(self, alias: str) -> str | None:
        r = self.call("GET", "/_matrix/client/v3/directory/room/" + urllib.parse.quote(alias, safe=""),
                      ok_errcodes=("M_NOT_FOUND",))
        return r.get("room_id")


def wait_healthy(url: str, limit: float) -> None:
    deadline = time.monotonic() + limit
    while True:
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            fail(f"{url} did not answer /health within {limit:.0f} s")
        time.sleep(0.3)


# --- bootstrap -----------------------------------------------------------------

def register(url: str, config: str, localpart: str, password: str) -> None:
    fd, pwfile = tempfile.mkstemp(prefix="pw-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(password)
        subprocess.run(
            [sys.executable, "-m", "synapse._scripts.register_new_matrix_user", "-c", config,
             "-u", localpart, "--password-file", pwfile, "--no-admin", "--exists-ok", url],
            check=True, stdout=subprocess.DEVNULL)
    finally:
        os.unlink(pwfile)


def cmd_bootstrap(a: argparse.Namespace) -> None:
    bot_password = need_env("MATRIX_BOT_PASSWORD")
    human_password = need_env("MATRIX_HUMAN_PASSWORD")
    wait_healthy(a.url, a.timeout)
    register(a.url, a.config, a.bot, bot_password)
    register(a.url, a.config, a.human, human_password)

    m = Matrix(a.url)
    human_id = m.login(a.human, human_password)
    server = human_id.split(":", 1)[1]
    bot_id = f"@{a.bot}:{server}"
    alias = f"#{a.room_alias}:{server}"
    room = m.room_id(alias)
    if room is None:
        room = m.call("POST", "/_matrix/client/v3/createRoom", {
            "preset": "public_chat",
            "room_alias_name": a.room_alias,
            "name": "OpenAgentIO demo",
            "topic": f"Ask anything: {bot_id} answers with the model, streamed.",
            "invite": [bot_id],
        })["room_id"]
        print(f"created {alias} ({room}); invited {bot_id}")
    else:
        print(f"{alias} ({room}) exists")
    m.logout()
    print(f"users: {bot_id} (the bridge), {human_id} (you)")


# --- say -------------------------------------------------------------------------

def cmd_say(a: argparse.Namespace) -> None:
    password = need_env(a.password_env)
    m = Matrix(a.url)
    me = m.login(a.user, password)
    try:
        say(m, me, a)
    finally:
        m.logout()


def say(m: Matrix, me: str, a: argparse.Namespace) -> None:
    server = me.split(":", 1)[1]
    alias = a.room if a.room.startswith(("#", "!")) else f"#{a.room}:{server}"
    room = alias if alias.startswith("!") else m.room_id(alias)
    if room is None:
        fail(f"room {alias} does not exist (did the bootstrap run?)")
    bot = a.bot if a.bot.startswith("@") else f"@{a.bot}:{server}"
    m.call("POST", "/_matrix/client/v3/join/" + urllib.parse.quote(room, safe=""), {})

    flt = urllib.parse.quote(json.dumps({"room": {"rooms": [room], "timeline": {"limit": 0}}}))
    since = m.call("GET", f"/_matrix/client/v3/sync?filter={flt}")["next_batch"]
    txn = f"demo-{time.time_ns()}"
    asked = m.call("PUT", f"/_matrix/client/v3/rooms/{urllib.parse.quote(room, safe='')}"
                          f"/send/m.room.message/{txn}", {"msgtype": "m.text", "body": a.text})["event_id"]
    print(f"{me} in {alias}: {a.text}", flush=True)

    flt = urllib.parse.quote(json.dumps({"room": {"rooms": [room], "timeline": {"limit": 50}}}))
    deadline = time.monotonic() + a.timeout
    answer_id: str | None = None
    text = ""
    changed = 0.0
    versions = 0
    while True:
        now = time.monotonic()
        if answer_id and not a.expect and now - changed >= a.settle:
            break
        if now > deadline:
            what = f"answer containing {a.expect!r}" if a.expect else "answer"
            fail(f"no {what} from {bot} within {a.timeout:.0f} s (last seen: {text!r})")
        r = m.call("GET", f"/_matrix/client/v3/sync?filter={flt}&timeout=1000&since={since}")
        since = r["next_batch"]
        events = r.get("rooms", {}).get("join", {}).get(room, {}).get("timeline", {}).get("events", [])
        for ev in events:
            if ev.get("sender") != bot or ev.get("type") != "m.room.message":
                continue
            c = ev.get("content", {})
            rel = c.get("m.relates_to", {})
            if rel.get("m.in_reply_to", {}).get("event_id") == asked and rel.get("rel_type") != "m.replace":
                if c.get("msgtype") == "m.notice":
                    fail(f"{bot} answered with a notice: {c.get('body')}")
                answer_id, new = ev["event_id"], c.get("body", "")
            elif answer_id and rel.get("rel_type") == "m.replace" and rel.get("event_id") == answer_id:
                new = c.get("m.new_content", {}).get("body", "")
            else:
                continue
            if new != text:
                versions += 1
                text = new
                changed = time.monotonic()
                label = "answer" if versions == 1 else f"edit {versions - 1}"
                print(f"  {bot} ({label}): {text}", flush=True)
        if a.expect and a.expect in text:
            break
    if versions < a.min_versions:
        fail(f"the answer arrived in {versions} version(s), expected at least {a.min_versions} "
             "(a streamed answer is posted, then edited)")
    print(f"answer complete after {versions} version(s): {text}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("config", help="write homeserver.yaml into --dir")
    c.add_argument("--dir", required=True, help="data directory (database, media, keys)")
    c.add_argument("--server-name", default="localhost")
    c.add_argument("--bind", default="127.0.0.1")
    c.add_argument("--port", type=int, default=8008)
    c.add_argument("--public-baseurl", default="http://localhost:8008/")
    c.add_argument("--log-file", help="log to this file (default: standard error)")
    c.add_argument("--log-level", default="WARNING")
    c.set_defaults(func=cmd_config)

    b = sub.add_parser("bootstrap", help="create the demo users and room")
    b.add_argument("--url", default="http://127.0.0.1:8008")
    b.add_argument("--config", required=True, help="homeserver.yaml (for the shared secret)")
    b.add_argument("--bot", default="bot")
    b.add_argument("--human", default="alice")
    b.add_argument("--room-alias", default="demo")
    b.add_argument("--timeout", type=float, default=60)
    b.set_defaults(func=cmd_bootstrap)

    s = sub.add_parser("say", help="post as the human user and print the bot's answer")
    s.add_argument("text")
    s.add_argument("--url", default="http://127.0.0.1:8008")
    s.add_argument("--user", default="alice")
    s.add_argument("--password-env", default="MATRIX_HUMAN_PASSWORD")
    s.add_argument("--room", default="demo", help="alias (#demo:server or demo) or room id")
    s.add_argument("--bot", default="bot", help="who answers (localpart or user id)")
    s.add_argument("--expect", help="wait until the answer contains this text")
    s.add_argument("--settle", type=float, default=3.0,
                   help="without --expect: done when the answer has not changed for this long")
    s.add_argument("--min-versions", type=int, default=1,
                   help="fail unless the answer was posted and then edited to this many versions")
    s.add_argument("--timeout", type=float, default=60)
    s.set_defaults(func=cmd_say)

    a = p.parse_args()
    a.func(a)


if __name__ == "__main__":
    main()
