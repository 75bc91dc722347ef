"""API keys: generated once for a local install, kept in a file only the user can read."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from leadscore.settings import ROLES


def ensure_keys_file(path: Path) -> tuple[bool, str]:
    """(created, "role:key,...") — reuse `path` if it exists, otherwise write new keys with mode 600."""
    path = Path(path)
    if path.exists():
        text = path.read_text().strip()
        return False, text.partition("=")[2] if text.startswith("LEADSCORE_API_KEYS=") else text
    path.parent.mkdir(parents=True, exist_ok=True)
    text = ",".join(f"{role}:{role[:2]}_{secrets.token_urlsafe(24)}" for role in ROLES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"LEADSCORE_API_KEYS={text}\n")
    return True, text
