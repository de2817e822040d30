"""Data versions from DVC (`dvc add` a raw path and read back the md5 DVC recorded for it), and the code's git commit."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

from rec_pipeline.schema import DataFormatError

# DVC would otherwise try to reach its analytics endpoint; runs here are offline.
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def dvc_track(path: str | Path, repo_root: str | Path) -> str:
    """Track `path` with DVC (a no-op when unchanged) and return its md5 (directories end in `.dir`)."""
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    path = Path(path).resolve()
    repo_root = Path(repo_root).resolve()
    if not path.exists():
        raise DataFormatError(str(path), "no such file or folder to track with DVC")
    if repo_root not in path.parents:
        raise DataFormatError(str(path), f"raw data must live inside the DVC repository {repo_root} to be versioned")
    try:
        with Repo(str(repo_root)) as repo:
            if os.environ.get("DVC_STAGE"):
                # Inside `dvc repro` the stage holds a lock on its dependencies and records their hashes in
                # dvc.lock itself: compute the same md5 without writing.
                return _dry_run_md5(repo, path)
            # Its git hints ("To track the changes with git, run: ...") are meant for an interactive shell.
            repo.scm_context.quiet = True
            repo.add(str(path))
    except NotDvcRepoError:
        raise RuntimeError(f"{repo_root} is not a DVC repository: run `dvc init` there first") from None
    return dvc_md5(path)


def _dry_run_md5(repo, path: Path) -> str:
    return _dry_run_build(repo, path).hash_info.value


def _dry_run_build(repo, path: Path):
    from dvc_data.hashfile.build import build

    _, _, obj = build(repo.cache.local, str(path), repo.fs, "md5", dry_run=True, ignore=repo.dvcignore)
    return obj


def dvc_md5(path: str | Path) -> str:
    """The md5 recorded in `<path>.dvc`."""
    pointer = Path(str(path) + ".dvc")
    outs = yaml.safe_load(pointer.read_text())["outs"]
    return outs[0]["md5"]


def init_dvc_repo(root: str | Path, local_remote: str | Path | None = None) -> None:
    """`dvc init` without git at `root` (for a stand-alone data folder or a test), with an optional local remote."""
    from dvc.repo import Repo

    root = Path(root)
    if (root / ".dvc").exists():
        return
    Repo.init(str(root), no_scm=True)
    with Repo(str(root)) as repo:
        with repo.config.edit() as conf:
            conf["core"]["analytics"] = False
            if local_remote is not None:
                conf["remote"]["local"] = {"url": str(local_remote)}
                conf["core"]["remote"] = "local"


def git_commit(root: str | Path) -> str:
    """The commit checked out at `root`, marked when the working tree has uncommitted changes."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)

    head = git("rev-parse", "HEAD")
    if head.returncode != 0:
        return "unknown (not a git checkout)"
    dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    return head.stdout.strip() + (" with uncommitted changes" if dirty else "")


def current_md5(path: str | Path, repo_root: str | Path) -> str:
    """The md5 DVC would record for `path` as it is now, without tracking it: what a sensor compares with the last
    materialised version."""
    from dvc.repo import Repo

    path = Path(path).resolve()
    if not path.exists():
        raise DataFormatError(str(path), "no such file or folder")
    with Repo(str(Path(repo_root).resolve())) as repo:
        return _dry_run_md5(repo, path)


def file_md5s(path: str | Path, repo_root: str | Path) -> dict[str, str]:
    """The md5 DVC holds for each file under `path` (relative names as the raw readers give them; a single file under
    its own name), from DVC's state cache where the file is unchanged: what tells which day's files changed."""
    from dvc.repo import Repo

    path = Path(path).resolve()
    if not path.exists():
        raise DataFormatError(str(path), "no such file or folder")
    with Repo(str(Path(repo_root).resolve())) as repo:
        obj = _dry_run_build(repo, path)
    if path.is_file():
        return {path.name: obj.hash_info.value}
    return {"/".join(key): hash_info.value for key, _, hash_info in obj}


def partition_md5(md5s: dict[str, str]) -> str:
    """One md5 for a set of files (a day partition): over their names and md5s, in name order."""
    import hashlib

    return hashlib.md5("".join(f"{name}\t{md5}\n" for name, md5 in sorted(md5s.items())).encode()).hexdigest()
