"""A loopback stand-in for the Hugging Face Hub, for the zoo tests.

The real ``huggingface_hub`` client (2.x, httpx based) talks to it through ``HF_ENDPOINT``, so the
tests exercise the same requests the library makes against huggingface.co. It implements, in
memory, the endpoints lightning-gen uses, with the response shapes and headers the installed client
reads (found in its source: ``file_download.py``, ``_commit_api.py``, ``hf_api.py``, ``utils/_http.py``):

=========================================================  =====================================
POST /api/repos/create                                     ``create_repo`` (409 when it exists)
POST /api/models/{repo}/branch/{branch}                    ``create_branch`` (409 when it exists)
POST /api/validate-yaml                                    README front-matter check in ``create_commit``
POST /api/models/{repo}/preupload/{rev}                    upload mode per file: always ``regular``
POST /api/models/{repo}/commit/{rev}[?create_pr=1]         NDJSON header / file / deletedFile lines; with
                                                           create_pr, a ``refs/pr/N`` ref and its URL
POST /api/models/{repo}/discussions                        ``create_pull_request``: a ``refs/pr/N`` ref from
                                                           main (what ``upload_folder(create_pr=True)`` does
                                                           when ``hf_xet`` is installed, before committing to it)
GET  /api/models/{repo}/discussions/{num}                  ``get_discussion_details``
GET  /api/models/{repo}[/revision/{rev}]                   ``repo_info``: ``sha`` and ``siblings``
GET  /api/models/{repo}/tree/{rev}[/{path}]                ``list_repo_tree`` (one page)
HEAD|GET /{repo}/resolve/{rev}/{path}                      ``X-Repo-Commit``, ``ETag``, ``Content-Length``
GET  <cdn>/blobs/{sha256}                                  where ``*.safetensors`` resolves redirect to
=========================================================  =====================================

Errors carry the ``X-Error-Code`` header (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``)
from which the client raises ``RepositoryNotFoundError``, ``RevisionNotFoundError`` and
``RemoteEntryNotFoundError``.

Two deliberate choices:

* Uploads are always "regular" (base64 inside the commit). Answering "lfs" would make a client with
  ``hf_xet`` installed (2.x installs it) upload through the Xet protocol, which needs a CAS server;
  the commit endpoint is the same either way.
* Downloads of ``*.safetensors`` behave like LFS files on the real Hub: the resolve URL answers 302
  to a second server on another port (another origin, like the Hub's CDN) with ``X-Linked-Etag``
  (the sha256) and ``X-Linked-Size``. The client then reads the metadata from the redirect itself
  and fetches the CDN URL without the ``Authorization`` header, as it does in production.

Only namespaced model repositories (``ORG/NAME``) are supported; LFS uploads, pagination and
discussions beyond the pull request's ref are not.

Test modules list this module in ``pytest_plugins`` for its fixtures and may import its helpers; it
holds no asserts and opts out of assertion rewriting (PYTEST_DONT_REWRITE), which would otherwise
warn that it was imported before pytest registered it.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import yaml

GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
FAKE_TOKEN = "hf_loopbackFakeToken0123456789"


def git_blob_oid(data: bytes) -> str:
    """The git object id of a file, which the client compares with its own to skip unchanged files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _is_lfs_like(path: str) -> bool:
    return path.endswith(".safetensors")


@dataclass
class Repo:
    repo_id: str
    private: bool
    create_payload: dict[str, Any] = field(default_factory=dict)  # what create_repo sent (visibility...)
    pull_requests: int = 0  # refs/pr/N opened so far
    branches: dict[str, str] = field(default_factory=dict)  # branch -> commit sha
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit sha -> {path: content}

    def resolve(self, revision: str) -> str | None:
        """Commit sha for a branch name or a full commit hash."""
        if revision in self.branches:
            return self.branches[revision]
        return revision if revision in self.commits else None


class HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


class FakeHub:
    """In-memory Hub served on 127.0.0.1 (random ports) from background threads.

    Example:
        >>> hub = FakeHub()
        >>> url = hub.start()
        >>> url.startswith("http://127.0.0.1:")
        True
        >>> hub.stop()
    """

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.blobs: dict[str, bytes] = {}  # sha256 -> content, served by the "CDN"
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, path, headers) seen
        self._lock = threading.Lock()
        self._counter = itertools.count()
        self._servers: list[ThreadingHTTPServer] = []
        self._threads: list[threading.Thread] = []
        self.url = ""
        self.cdn_url = ""

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> str:
        for role in ("hub", "cdn"):
            server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
            server.daemon_threads = True
            server.fake_hub = self  # type: ignore[attr-defined]
            server.role = role  # type: ignore[attr-defined]
            # A short poll interval keeps stop() (and so each test's teardown) fast.
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"fake-hub-{role}", daemon=True
            )
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
        self.url = f"http://127.0.0.1:{self._servers[0].server_address[1]}"
        self.cdn_url = f"http://127.0.0.1:{self._servers[1].server_address[1]}"
        return self.url

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers.clear()
        self._threads.clear()

    # -- state helpers (also handy in tests) ------------------------------------------------------

    def create_repo(self, repo_id: str, private: bool = False) -> Repo:
        repo = Repo(repo_id, private)
        self.repos[repo_id] = repo
        self._commit(repo, "main", {".gitattributes": GITATTRIBUTES})
        return repo

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        repo = self.repos[repo_id]
        return dict(repo.commits[repo.resolve(revision)])

    def head(self, repo_id: str, branch: str = "main") -> str:
        return self.repos[repo_id].branches[branch]

    def _commit(self, repo: Repo, branch: str, files: dict[str, bytes]) -> str:
        sha = hashlib.sha1(f"{repo.repo_id}:{branch}:{next(self._counter)}".encode()).hexdigest()
        repo.commits[sha] = files
        repo.branches[branch] = sha
        for path, content in files.items():
            if _is_lfs_like(path):
                self.blobs[hashlib.sha256(content).hexdigest()] = content
        return sha

    def _repo(self, repo_id: str) -> Repo:
        if repo_id not in self.repos:
            raise HubError(404, "RepoNotFound", f"Repository {repo_id} not found")
        return self.repos[repo_id]

    def _revision(self, repo: Repo, revision: str) -> str:
        sha = repo.resolve(revision)
        if sha is None:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return sha

    # -- endpoints ----------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes):
        """Route one request; returns (status, headers, body bytes)."""
        parts = [unquote(p) for p in path.strip("/").split("/")]
        with self._lock:
            if method == "POST" and path == "/api/repos/create":
                return self._create_repo(headers, json.loads(body or b"{}"))
            if method == "POST" and path == "/api/validate-yaml":
                return self._validate_yaml(json.loads(body or b"{}"))
            if len(parts) >= 4 and parts[:2] == ["api", "models"]:
                repo_id, op, rest = f"{parts[2]}/{parts[3]}", (parts[4] if len(parts) > 4 else None), parts[5:]
                if method == "GET" and op is None:
                    return self._repo_info(repo_id, "main")
                if method == "GET" and op == "revision" and len(rest) == 1:
                    return self._repo_info(repo_id, rest[0])
                if method == "GET" and op == "tree" and rest:
                    return self._tree(repo_id, rest[0], "/".join(rest[1:]), query)
                if method == "POST" and op == "preupload" and len(rest) == 1:
                    self._require_token(headers)
                    return self._preupload(repo_id, rest[0], json.loads(body or b"{}"))
                if method == "POST" and op == "commit" and len(rest) == 1:
                    self._require_token(headers)
                    return self._commit_endpoint(repo_id, rest[0], body, query)
                if method == "POST" and op == "discussions" and not rest:
                    self._require_token(headers)
                    return self._create_pull_request(repo_id, json.loads(body or b"{}"))
                if method == "GET" and op == "discussions" and len(rest) == 1:
                    return self._discussion(repo_id, int(rest[0]))
                if method == "POST" and op == "branch" and len(rest) == 1:
                    self._require_token(headers)
                    return self._create_branch(repo_id, rest[0], json.loads(body or b"{}"))
            if method in ("GET", "HEAD") and len(parts) >= 5 and parts[2] == "resolve":
                return self._resolve(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
        raise HubError(404, None, f"No route for {method} {path} in the loopback Hub")

    def handle_cdn(self, method: str, path: str):
        parts = path.strip("/").split("/")
        if method in ("GET", "HEAD") and len(parts) == 2 and parts[0] == "blobs" and parts[1] in self.blobs:
            content = self.blobs[parts[1]]
            return 200, {"Content-Type": "application/octet-stream", "Content-Length": str(len(content))}, content
        raise HubError(404, None, "No such blob")

    @staticmethod
    def _require_token(headers: dict[str, str]) -> None:
        if not headers.get("authorization", "").startswith("Bearer "):
            raise HubError(401, None, "Invalid credentials in Authorization header")

    def _create_repo(self, headers: dict[str, str], payload: dict[str, Any]):
        self._require_token(headers)
        if payload.get("type", "model") != "model":
            raise HubError(400, None, "The loopback Hub only hosts model repositories")
        repo_id = f"{payload.get('organization') or 'fake-user'}/{payload['name']}"
        if repo_id in self.repos:
            return _json(409, {"error": "You already created this model repo", "url": f"{self.url}/{repo_id}"})
        repo = self.create_repo(repo_id, private=payload.get("visibility") == "private" or bool(payload.get("private")))
        repo.create_payload = payload
        return _json(200, {"url": f"{self.url}/{repo_id}", "name": repo_id, "id": repo_id})

    def _create_branch(self, repo_id: str, branch: str, payload: dict[str, Any]):
        repo = self._repo(repo_id)
        if branch in repo.branches:
            return _json(409, {"error": f"Reference refs/heads/{branch} already exists"})
        repo.branches[branch] = self._revision(repo, payload.get("startingPoint") or "main")
        return _json(200, {})

    @staticmethod
    def _validate_yaml(payload: dict[str, Any]):
        content: str = payload.get("content", "")
        if content.startswith("---"):
            end = content.find("\n---", 3)
            try:
                metadata = yaml.safe_load(content[3:end] if end != -1 else "")
            except yaml.YAMLError as err:
                return _json(400, {"errors": [{"message": f"Invalid YAML: {err}"}], "warnings": []})
            if metadata is not None and not isinstance(metadata, dict):
                return _json(400, {"errors": [{"message": "Metadata must be a mapping"}], "warnings": []})
        return _json(200, {"errors": [], "warnings": []})

    def _create_pull_request(self, repo_id: str, payload: dict[str, Any]):
        repo = self._repo(repo_id)
        if not payload.get("pullRequest"):
            raise HubError(400, None, "The loopback Hub only opens pull requests, not plain discussions")
        repo.pull_requests += 1
        repo.branches[f"refs/pr/{repo.pull_requests}"] = repo.branches["main"]  # opened against main, as the Hub does
        return _json(200, {"num": repo.pull_requests, "url": f"{self.url}/{repo_id}/discussions/{repo.pull_requests}"})

    def _discussion(self, repo_id: str, num: int):
        repo = self._repo(repo_id)
        if not 1 <= num <= repo.pull_requests:
            raise HubError(404, None, f"Discussion {num} not found")
        details = {
            "title": f"pull request {num}", "num": num, "author": {"name": "fake-user"},
            "createdAt": "2026-01-01T00:00:00.000Z", "status": "draft",
            "repo": {"name": repo_id, "type": "model"}, "isPullRequest": True, "events": [],
            "changes": {"base": "refs/heads/main"}, "filesWithConflicts": [], "diff": "",
        }
        return _json(200, details)

    def _repo_info(self, repo_id: str, revision: str):
        repo = self._repo(repo_id)
        sha = self._revision(repo, revision)
        siblings = [{"rfilename": p} for p in sorted(repo.commits[sha])]
        return _json(200, {"id": repo_id, "sha": sha, "private": repo.private, "siblings": siblings, "tags": []})

    def _tree(self, repo_id: str, revision: str, prefix: str, query: dict[str, list[str]]):
        repo = self._repo(repo_id)
        files = repo.commits[self._revision(repo, revision)]
        prefix = prefix.strip("/")
        recursive = query.get("recursive", ["False"])[0].lower() in ("1", "true")
        entries, folders = [], set()
        for path, content in sorted(files.items()):
            if prefix and not path.startswith(prefix + "/"):
                continue
            relative = path[len(prefix) + 1 :] if prefix else path
            if "/" in relative and not recursive:
                folders.add((prefix + "/" if prefix else "") + relative.split("/")[0])
                continue
            entry = {"type": "file", "oid": git_blob_oid(content), "size": len(content), "path": path}
            if _is_lfs_like(path):
                entry["lfs"] = {"oid": hashlib.sha256(content).hexdigest(), "size": len(content), "pointerSize": 134}
            entries.append(entry)
        if prefix and not entries and not folders:
            raise HubError(404, "EntryNotFound", f"{prefix} does not exist on {revision}")
        entries += [{"type": "directory", "oid": "0" * 40, "size": 0, "path": f} for f in sorted(folders)]
        return _json(200, entries)

    def _preupload(self, repo_id: str, revision: str, payload: dict[str, Any]):
        repo = self._repo(repo_id)
        current = repo.commits[self._revision(repo, revision)]
        files = [
            {
                "path": f["path"],
                "uploadMode": "regular",  # see the module docstring: never "lfs"
                "shouldIgnore": False,
                "oid": git_blob_oid(current[f["path"]]) if f["path"] in current else None,
            }
            for f in payload.get("files", [])
        ]
        return _json(200, {"files": files, "commitOid": repo.resolve(revision)})

    def _commit_endpoint(self, repo_id: str, revision: str, body: bytes, query: dict[str, list[str]]):
        repo = self._repo(repo_id)
        if revision not in repo.branches:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        files = dict(repo.commits[repo.branches[revision]])
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, None, "The first NDJSON line must be the commit header")
        parent = lines[0]["value"].get("parentCommit")
        if parent is not None and parent != repo.branches[revision]:
            raise HubError(412, None, "Parent commit is not the head of the branch")
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value", {})
            if key == "file":
                if value.get("encoding") != "base64":
                    raise HubError(400, None, "Only base64 file content is supported")
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                if value["path"] not in files:
                    raise HubError(404, "EntryNotFound", "A file with this name doesn't exist")
                del files[value["path"]]
            elif key == "deletedFolder":
                files = {p: c for p, c in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
            else:
                raise HubError(400, None, f"Unsupported commit operation {key!r} (LFS uploads are not implemented)")
        answer: dict[str, Any] = {"success": True}
        if query.get("create_pr"):  # the branch stays; the commit lands on a new refs/pr/N, like the Hub's PRs
            repo.pull_requests += 1
            target = f"refs/pr/{repo.pull_requests}"
            answer["pullRequestUrl"] = f"{self.url}/{repo_id}/discussions/{repo.pull_requests}"
        else:
            target = revision
        sha = self._commit(repo, target, files)
        return _json(200, {**answer, "commitUrl": f"{self.url}/{repo_id}/commit/{sha}", "commitOid": sha})

    def _resolve(self, repo_id: str, revision: str, path: str):
        repo = self._repo(repo_id)
        sha = self._revision(repo, revision)
        files = repo.commits[sha]
        if path not in files:
            raise HubError(404, "EntryNotFound", f"{path} does not exist", {"X-Repo-Commit": sha})
        content = files[path]
        headers = {"X-Repo-Commit": sha, "ETag": f'"{git_blob_oid(content)}"'}
        if _is_lfs_like(path):
            digest = hashlib.sha256(content).hexdigest()
            headers.update(
                {
                    "Location": f"{self.cdn_url}/blobs/{digest}",
                    "X-Linked-Etag": f'"{digest}"',
                    "X-Linked-Size": str(len(content)),
                    "Content-Length": "0",
                }
            )
            return 302, headers, b""
        headers.update({"Content-Type": "application/octet-stream", "Content-Length": str(len(content))})
        return 200, headers, content


def _json(status: int, payload: Any):
    body = json.dumps(payload).encode()
    return status, {"Content-Type": "application/json", "Content-Length": str(len(body))}, body


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass

    def _serve(self, method: str) -> None:
        hub: FakeHub = self.server.fake_hub  # type: ignore[attr-defined]
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        hub.requests.append((method, split.path, headers))
        try:
            if self.server.role == "cdn":  # type: ignore[attr-defined]
                status, out_headers, out_body = hub.handle_cdn(method, split.path)
            else:
                status, out_headers, out_body = hub.handle(method, split.path, parse_qs(split.query), headers, body)
        except HubError as err:
            status, out_headers, out_body = _json(err.status, {"error": err.message})
            out_headers.update(err.headers)
            out_headers["X-Error-Message"] = err.message
            if err.code:
                out_headers["X-Error-Code"] = err.code
        except Exception as err:  # a bug in this server: answer (not 5xx, which the client retries with sleeps)
            status, out_headers, out_body = _json(418, {"error": f"loopback Hub bug: {type(err).__name__}: {err}"})
        self.send_response(status)
        for key, value in out_headers.items():
            self.send_header(key, value)
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(out_body)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_HEAD(self) -> None:
        self._serve("HEAD")

    def do_POST(self) -> None:
        self._serve("POST")


# --------------------------------------------------------------------------------------------------
# pytest fixtures
# --------------------------------------------------------------------------------------------------


def _point_client_at(monkeypatch: pytest.MonkeyPatch, endpoint: str, hf_home: str) -> None:
    """Point huggingface_hub at ``endpoint`` and a private cache.

    huggingface_hub reads HF_ENDPOINT, HF_HOME, HF_HUB_CACHE and HF_HUB_OFFLINE once, at import, into
    ``huggingface_hub.constants``; setting the environment alone is not enough in a running process.
    """
    from huggingface_hub import constants

    cache = f"{hf_home}/hub"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HOME", hf_home)
    monkeypatch.setenv("HF_HUB_CACHE", cache)
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HOME", hf_home)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", cache)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", f"{hf_home}/token")
    monkeypatch.setattr(constants, "HF_XET_CACHE", f"{hf_home}/xet")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)


def set_offline(monkeypatch: pytest.MonkeyPatch, offline: bool = True) -> None:
    """Switch huggingface_hub's offline mode in this process (env var and the constant it was read into)."""
    from huggingface_hub import constants

    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)


_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@pytest.fixture
def no_internet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any connection to a non-loopback address, so no test can reach the internet by mistake."""
    real_connect = socket.socket.connect

    def guarded_connect(sock: socket.socket, address: Any) -> Any:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in _LOOPBACK:
            raise OSError(f"test blocked a connection to {address!r}: tests must stay offline")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)


@pytest.fixture
def fake_hub(tmp_path, monkeypatch, no_internet):
    """A running :class:`FakeHub`, with huggingface_hub pointed at it and at an empty cache."""
    from huggingface_hub.utils import close_session

    hub = FakeHub()
    endpoint = hub.start()
    _point_client_at(monkeypatch, endpoint, str(tmp_path / "hf-home"))
    close_session()  # drop pooled connections to servers of earlier tests
    yield hub
    hub.stop()
    close_session()
