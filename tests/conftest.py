"""Test-wide settings."""

from __future__ import annotations

import os
import tempfile

# Measured limits are cached on disk (lsmcheck.explore.headroom); the tests use a cache of
# their own so that neither a user's cache nor an earlier run decides what they see.
os.environ["LSMCHECK_CACHE_DIR"] = tempfile.mkdtemp(prefix="lsmcheck-test-cache-")
