"""Key files and .env never reach git or an image, and the master identity is given at run time
to the restore-capable service alone (never baked into an image)."""

import fnmatch
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECRET_FILES = ["backup-master.key", "keys/operator.key", "age-identity.txt", "keys.txt",
                ".env", ".env.production", "secrets/master.key"]


def _dockerignored(path: str) -> bool:
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    # Docker's rules: a pattern matches the path from the context root; ** spans directories.
    return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(Path(path).name, p.removeprefix("**/"))
               or path.startswith(p.rstrip("/") + "/") for p in patterns)


def test_git_ignores_key_files_and_env_files() -> None:
    done = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "--no-index", *SECRET_FILES],
                          capture_output=True, text=True, check=False)
    assert sorted(done.stdout.split()) == sorted(SECRET_FILES), done.stdout


def test_the_image_build_context_leaves_key_files_and_env_files_out() -> None:
    assert [p for p in SECRET_FILES if not _dockerignored(p)] == []


def test_the_image_copies_named_sources_not_the_whole_context() -> None:
    copies = [line for line in (ROOT / "Dockerfile").read_text().splitlines()
              if line.startswith("COPY")]
    assert copies and not any(re.match(r"COPY\s+\.\s", line) for line in copies), copies


def test_only_the_backup_service_is_given_the_master_identity_at_run_time() -> None:
    compose = (ROOT / "docker-compose.kafka.yml").read_text()
    code = "\n".join(line for line in compose.splitlines() if not line.lstrip().startswith("#"))
    section = re.split(r"\n(?=[a-z])", code.split("\nservices:\n", 1)[1])[0]
    services = re.split(r"\n  (?=[a-z][\w-]*:\n)", "\n" + section)[1:]
    holders = [s.split(":", 1)[0] for s in services if "backup-master" in s]
    assert holders == ["backup"], holders
    assert "./backup-master.key" not in compose  # never a file in the repository root
    assert re.search(r"^secrets:\n  backup-master:\n    file: \$\{", compose, re.M), \
        "the master identity should be a compose secret read from outside the repository"
