"""A local Hugging Face Hub for the tests: a real HTTP server speaking the few endpoints ``huggingface_hub``
uses to create a repo, upload (preupload + ndjson commit), list a tree, squash history and download.

The code under test keeps its real ``HfApi``; only ``endpoint`` points here, so the client's own request
building (payloads, paths, pagination, error mapping) runs as it would against huggingface.co. The server
keeps every repo's history as full snapshots (path -> bytes), so a test can check that a file left not only
the current tree but the history too (``HfApi.super_squash_history``).

    with hub_server() as hub:
        api = HfApi(endpoint=hub.endpoint, token="hf_test")
        ...
        hub.files("dataset", "lab/results")      # the current tree
        hub.history("dataset", "lab/results")    # every snapshot, oldest first

Requests need ``HF_HUB_OFFLINE`` unset: ``hub.online()`` patches huggingface_hub's switch for the block.
"""
from __future__ import annotations

import base64
import hashlib
import json
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator
from urllib.parse import parse_qs, unquote, urlparse

TOKEN = "hf_test"


def _sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # git's blob id


@dataclass
class Repo:
    kind: str
    repo_id: str
    private: bool
    commits: list[tuple[str, dict[str, bytes]]] = field(default_factory=list)  # (commit id, snapshot)

    @property
    def tree(self) -> dict[str, bytes]:
        return self.commits[-1][1] if self.commits else {}

    @property
    def head(self) -> str:
        return self.commits[-1][0] if self.commits else "0" * 40

    def commit(self, tree: dict[str, bytes], summary: str) -> str:
        oid = hashlib.sha1(f"{len(self.commits)}:{summary}:{sorted(tree)}".encode()).hexdigest()
        self.commits.append((oid, dict(tree)))
        return oid


class LocalHub:
    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, in order
        self.lock = threading.Lock()
        self.fail_next: list[int] = []  # status codes to answer the next requests with (an outage)
        self.endpoint = ""

    def files(self, kind: str, repo_id: str) -> dict[str, bytes]:
        return dict(self.repos[(kind, repo_id)].tree)

    def history(self, kind: str, repo_id: str) -> list[dict[str, bytes]]:
        return [dict(t) for _, t in self.repos[(kind, repo_id)].commits]

    @contextmanager
    def online(self) -> Iterator[None]:
        """Let huggingface_hub reach this server although the test run sets HF_HUB_OFFLINE=1."""
        from huggingface_hub import constants

        before = constants.HF_HUB_OFFLINE
        constants.HF_HUB_OFFLINE = False
        try:
            yield
        finally:
            constants.HF_HUB_OFFLINE = before


def _handler(hub: LocalHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _send(self, status: int, body: object = None, headers: dict[str, str] | None = None,
                  raw: bytes | None = None) -> None:
            data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream" if raw is not None else "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _error(self, status: int, message: str) -> None:
            self._send(status, {"error": message}, {"X-Error-Message": message})

        def _body(self) -> bytes:
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def _authorised(self) -> bool:
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._error(401, "Invalid credentials in Authorization header")
                return False
            return True

        def _repo(self, kind: str, repo_id: str) -> Repo | None:
            repo = hub.repos.get((kind, repo_id))
            if repo is None:
                self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            return repo

        def _route(self) -> None:
            url = urlparse(self.path)
            path, query = unquote(url.path), parse_qs(url.query)
            with hub.lock:
                hub.requests.append((self.command, path))
                if hub.fail_next:
                    self._error(hub.fail_next.pop(0), "the Hub is having a moment")
                    return
            parts = path.strip("/").split("/")
            if path == "/api/validate-yaml" and self.command == "POST":  # a README's card metadata, as the Hub does
                return self._validate_card(json.loads(self._body() or b"{}").get("content", ""))
            if path == "/api/repos/create" and self.command == "POST":
                return self._create(json.loads(self._body() or b"{}"))
            if len(parts) >= 5 and parts[0] == "api" and parts[1] in ("models", "datasets", "spaces"):
                kind, repo_id, action, rest = parts[1][:-1], "/".join(parts[2:4]), parts[4], parts[5:]
                return self._api(kind, repo_id, action, rest, query)
            # downloads: /{repo} or /datasets/{repo} + /resolve/{revision}/{file}
            kind = "model"
            if parts and parts[0] in ("datasets", "spaces"):
                kind, parts = parts[0][:-1], parts[1:]
            if len(parts) >= 5 and parts[2] == "resolve":
                return self._resolve(kind, "/".join(parts[:2]), "/".join(parts[4:]))
            self._error(404, f"no such endpoint {path}")

        def _validate_card(self, content: str) -> None:
            import yaml

            try:
                meta = yaml.safe_load(content.split("---")[1]) if content.startswith("---") else {}
            except (yaml.YAMLError, IndexError) as e:
                return self._send(400, {"errors": [{"message": f"invalid YAML: {e}"}]})
            ok = isinstance(meta, dict) or meta is None
            self._send(200 if ok else 400, {"errors": [] if ok else [{"message": "metadata must be a mapping"}],
                                            "warnings": []})

        def _create(self, body: dict) -> None:
            if not self._authorised():
                return
            kind = body.get("type") or "model"
            repo_id = f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
            if "/" not in repo_id:
                repo_id = f"tester/{repo_id}"
            url = f"{hub.endpoint}/{'' if kind == 'model' else kind + 's/'}{repo_id}"
            with hub.lock:
                if (kind, repo_id) in hub.repos:
                    return self._send(409, {"error": "You already created this repo", "url": url})
                repo = Repo(kind, repo_id, body.get("visibility") in ("private", "protected") or bool(body.get("private")))
                repo.commit({".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"}, "initial")
                hub.repos[(kind, repo_id)] = repo
            self._send(200, {"url": url, "name": repo_id})

        def _api(self, kind: str, repo_id: str, action: str, rest: list[str], query: dict) -> None:
            with hub.lock:
                repo = self._repo(kind, repo_id)
                if repo is None:
                    return
                if repo.private and action != "revision" and not self._authorised():
                    return
                if action == "preupload":
                    files = json.loads(self._body())["files"]
                    return self._send(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                                                       "oid": (_sha1(repo.tree[f["path"]]) if f["path"] in repo.tree else None)}
                                                      for f in files]})
                if action == "commit":
                    return self._commit(repo, self._body())
                if action == "tree":
                    prefix = "/".join(rest[1:]).strip("/")
                    return self._tree(repo, prefix, "recursive" in query and query["recursive"][0] in ("1", "true", "True"))
                if action == "super-squash":
                    message = json.loads(self._body() or b"{}").get("message", "squash")
                    tree = repo.tree
                    repo.commits.clear()
                    oid = repo.commit(tree, message)
                    return self._send(200, {"commitId": oid})
                if action == "revision":
                    if repo.private and not self._authorised():
                        return
                    return self._send(200, {"id": repo_id, "sha": repo.head, "private": repo.private,
                                            "siblings": [{"rfilename": p} for p in sorted(repo.tree)]})
            self._error(404, f"no such endpoint {action}")

        def _commit(self, repo: Repo, body: bytes) -> None:
            tree = dict(repo.tree)
            summary = ""
            for line in body.splitlines():
                item = json.loads(line)
                key, value = item["key"], item["value"]
                if key == "header":
                    summary = value.get("summary", "")
                elif key == "file":
                    tree[value["path"]] = base64.b64decode(value["content"])
                elif key == "deletedFile":
                    if value["path"] not in tree:
                        return self._error(404, "A file with this name doesn't exist")
                    del tree[value["path"]]
                elif key == "deletedFolder":
                    for p in [p for p in tree if p.startswith(value["path"].rstrip("/") + "/")]:
                        del tree[p]
                else:
                    return self._error(400, f"this local hub does not take {key!r} entries")
            oid = repo.commit(tree, summary)
            prefix = "" if repo.kind == "model" else repo.kind + "s/"
            self._send(200, {"commitUrl": f"{hub.endpoint}/{prefix}{repo.repo_id}/commit/{oid}", "commitOid": oid,
                             "success": True})

        def _tree(self, repo: Repo, prefix: str, recursive: bool) -> None:
            entries: dict[str, dict] = {}
            for path, data in sorted(repo.tree.items()):
                if prefix and not path.startswith(prefix + "/"):
                    continue
                rel = path[len(prefix) + 1:] if prefix else path
                if recursive or "/" not in rel:
                    entries[path] = {"type": "file", "path": path, "size": len(data), "oid": _sha1(data)}
                    parents = rel.split("/")[:-1]
                    for i in range(1, len(parents) + 1) if recursive else ():
                        folder = "/".join(([prefix] if prefix else []) + parents[:i])
                        entries.setdefault(folder, {"type": "directory", "path": folder, "oid": "0" * 40})
                else:
                    folder = "/".join(([prefix] if prefix else []) + [rel.split("/")[0]])
                    entries.setdefault(folder, {"type": "directory", "path": folder, "oid": "0" * 40})
            if prefix and not entries:
                return self._send(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
            self._send(200, list(entries.values()))

        def _resolve(self, kind: str, repo_id: str, filename: str) -> None:
            with hub.lock:
                repo = self._repo(kind, repo_id)
                if repo is None or (repo.private and not self._authorised()):
                    return
                data = repo.tree.get(filename)
                head = repo.head
            if data is None:
                return self._send(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
            self._send(200, raw=data, headers={"ETag": f'"{_sha1(data)}"', "X-Repo-Commit": head})

        do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _route

    return Handler


@contextmanager
def hub_server() -> Iterator[LocalHub]:
    hub = LocalHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    server.daemon_threads = True
    hub.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with hub.online():
            yield hub
    finally:
        server.shutdown()
        server.server_close()
