"""A small Hugging Face Hub on 127.0.0.1, enough for the real ``huggingface_hub`` client.

It answers what ``HfApi.create_repo``, ``upload_folder`` (regular, non-LFS files), ``repo_info``,
``hf_hub_download`` and ``snapshot_download`` call, so tests run those code paths end to end with
``HF_ENDPOINT`` pointing here. Repositories live in memory as commits (path -> bytes). Tokens:
``write`` may create and commit, ``read`` may only read; anonymous requests may read public repos.
Errors carry the ``X-Error-Code`` header the client maps to its exception types.
"""
from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

WRITE, READ = "hf_write_token_for_tests", "hf_read_token_for_tests"


def _blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    private: bool = False
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)


class Hub:
    """The server's state and its thread; ``with Hub() as hub:`` serves at ``hub.url``."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str, str | None]] = []  # method, path, authorization header
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Hub:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def files(self, repo: str, rev: str = "main") -> dict[str, bytes]:
        r = self.repos[repo]
        return r.commits[r.refs.get(rev, rev)]


def _handler(hub: Hub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet
            pass

        # ---------------------------------------------------------------- helpers
        def _send(self, status: int, body: bytes | dict | list = b"", headers: dict[str, str] | None = None,
                  head: bool = False) -> None:
            if not isinstance(body, bytes):
                body = json.dumps(body).encode()
                headers = {"Content-Type": "application/json", **(headers or {})}
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _error(self, status: int, code: str, message: str, head: bool = False) -> None:
            self._send(status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message}, head)

        def _token(self) -> str | None:
            auth = self.headers.get("Authorization", "")
            return auth.removeprefix("Bearer ") or None

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _repo(self, name: str, head: bool = False) -> Repo | None:
            repo = hub.repos.get(name)
            if repo is None or (repo.private and self._token() not in (WRITE, READ)):
                self._error(404, "RepoNotFound", f"Repository not found: {name}", head)
                return None
            return repo

        def _commit(self, repo: Repo, rev: str, head: bool = False) -> str | None:
            sha = repo.refs.get(rev, rev if rev in repo.commits else None)
            if sha is None:
                self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}", head)
            return sha

        # ---------------------------------------------------------------- routes
        def do_HEAD(self) -> None:
            self._resolve(head=True)

        def do_GET(self) -> None:
            hub.requests.append(("GET", self.path, self.headers.get("Authorization")))
            parts = unquote(urlparse(self.path).path).strip("/").split("/")
            if parts[:2] == ["api", "models"] and len(parts) == 4:  # model_info: the main revision
                parts += ["revision", "main"]
            if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] in ("revision", "tree"):
                repo = self._repo("/".join(parts[2:4]))
                sha = repo and self._commit(repo, parts[5])
                if not sha:
                    return
                files = repo.commits[sha]
                if parts[4] == "revision":
                    return self._send(200, {"id": "/".join(parts[2:4]), "sha": sha, "private": repo.private,
                                            "siblings": [{"rfilename": p} for p in sorted(files)]})
                prefix = "/".join(parts[6:])
                return self._send(200, [{"type": "file", "path": p, "size": len(b), "oid": _blob_oid(b)}
                                        for p, b in sorted(files.items()) if p.startswith(prefix)])
            self._resolve()

        def _resolve(self, head: bool = False) -> None:
            parts = unquote(urlparse(self.path).path).strip("/").split("/")
            if len(parts) < 5 or parts[2] != "resolve":
                return self._error(404, "EntryNotFound", f"no route {self.path}", head)
            repo = self._repo("/".join(parts[:2]), head)
            sha = repo and self._commit(repo, parts[3], head)
            if not sha:
                return
            data = repo.commits[sha].get("/".join(parts[4:]))
            if data is None:
                return self._error(404, "EntryNotFound", f"{'/'.join(parts[4:])} does not exist", head)
            self._send(200, data, {"X-Repo-Commit": sha, "ETag": f'"{_blob_oid(data)}"'}, head)

        def do_POST(self) -> None:
            hub.requests.append(("POST", self.path, self.headers.get("Authorization")))
            parts = unquote(urlparse(self.path).path).strip("/").split("/")
            body = self._body()
            if parts == ["api", "validate-yaml"]:
                return self._send(200, {"errors": [], "warnings": []})
            if self._token() != WRITE:
                return self._error(403 if self._token() else 401, "Forbidden" if self._token() else "Unauthorized",
                                   "You don't have the rights to write to this namespace")
            if parts == ["api", "repos", "create"]:
                spec = json.loads(body)
                name = f"{spec['organization']}/{spec['name']}" if spec.get("organization") else f"user/{spec['name']}"
                if name in hub.repos:
                    return self._send(409, {"error": "You already created this model repo", "url": f"{hub.url}/{name}"})
                hub.repos[name] = Repo(private=spec.get("visibility") == "private" or bool(spec.get("private")))
                hub.repos[name].commits["0" * 40] = {}
                hub.repos[name].refs["main"] = "0" * 40
                return self._send(200, {"url": f"{hub.url}/{name}", "name": name})
            if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] in ("preupload", "commit"):
                repo = self._repo("/".join(parts[2:4]))
                if repo is None or not self._commit(repo, parts[5]):
                    return
                if parts[4] == "preupload":
                    files = json.loads(body)["files"]
                    return self._send(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                       "shouldIgnore": False} for f in files]})
                return self._apply_commit(repo, "/".join(parts[2:4]), parts[5], body)
            self._error(404, "EntryNotFound", f"no route {self.path}")

        def _apply_commit(self, repo: Repo, name: str, rev: str, body: bytes) -> None:
            parent = repo.refs[rev] if rev in repo.refs else rev
            files = dict(repo.commits[parent])
            for line in body.splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                elif item["key"] in ("deletedFile", "deletedFolder"):
                    files = {p: b for p, b in files.items() if not p.startswith(item["value"]["path"])}
                elif item["key"] != "header":
                    return self._error(400, "BadRequest", f"unsupported commit entry {item['key']}")
            sha = hashlib.sha1(parent.encode() + json.dumps(sorted((p, _blob_oid(b)) for p, b in files.items()))
                               .encode()).hexdigest()
            repo.commits[sha] = files
            repo.refs[rev] = sha
            self._send(200, {"commitUrl": f"{hub.url}/{name}/commit/{sha}", "commitOid": sha})

    return Handler
