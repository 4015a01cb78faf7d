"""Identity sources: the ChittyID authority and Cloudflare Access (the I/O behind domain rules)."""

from __future__ import annotations
